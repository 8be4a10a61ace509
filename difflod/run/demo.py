"""`difflod demo`: the main job on an embedded default, with no files needed.

It runs what a user runs — `difflod simplify` with its defaults
(SIMPLIFY_DEFAULTS: a QEM + bake start, its learning rates and regularizer) —
on a procedural "spiky" model (30,000 triangles, PBR textures, a detailed
normal map) with a budget of 400 triangles (1.3% of the reference, where
decimation alone loses most of the spikes and the bake alone cannot bring them
back). Only the run's size is scaled down to a few minutes on a 2-core CPU
(DEMO_SETTINGS: iterations, batch, resolutions).

out/demo gets the final model, the QEM + bake model it started from, progress
images, metrics, the HTML report and demo.png: reference | QEM + bake |
difflod from the display camera. The terminal gets the held-out PSNR of QEM +
bake and of difflod, in difflod's renderer and, where Chromium and the npm
package three are found, in three.js (an independent renderer, as a viewer
shows the files; its scores also go to metrics_threejs.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from difflod.mesh import Mesh
from difflod.run.simplify import BASELINE_NAME, SimplifyResult, simplify, simplify_config

__all__ = ["DEMO_REFERENCE", "DEMO_SETTINGS", "DEMO_TRIANGLES", "SCALED_KEYS", "run_demo"]

DEMO_REFERENCE = "asset:spiky?triangles=30000&texture_res=512"
DEMO_TRIANGLES = 400

#: the keys the demo may set: the size of the run, where it writes, how it is
#: shown and scored. Everything that decides the result's quality per
#: iteration (start, learning rates, regularizer, loss) is simplify's default.
SCALED_KEYS = frozenset({"out_dir", "iter", "batch", "train_res", "texture_res",
                         "display_res", "save_interval", "camera_eye", "eval_views",
                         "eval_res"})

#: SIMPLIFY_DEFAULTS scaled to a few minutes on a 2-core laptop CPU.
DEMO_SETTINGS: dict = {
    "out_dir": "demo",
    "iter": 650,
    "batch": 2,
    "train_res": 256,
    "texture_res": [256, 256],
    "display_res": 256,
    "save_interval": 100,
    "camera_eye": [2.5, 0.0, 2.5],
    "eval_views": 16,
    "eval_res": 256,
}

PICTURE_NAME = "demo.png"
PICTURE_RES = 384


def _picture(path: Path, reference: Mesh, meshes: list[Mesh], eye: tuple[float, ...],
             backend: str | None) -> None:
    """Write reference | meshes... side by side, seen from `eye` (difflod's renderer)."""
    from difflod.evaluate.evaluate import normalize_to, render_views
    from difflod.io.image import write_image
    from difflod.scene.views import views_from_eye

    view = views_from_eye(eye)
    gap = torch.ones((PICTURE_RES, 4, 3))
    tiles: list[torch.Tensor] = []
    for mesh in (reference, *meshes):
        color, _ = render_views(normalize_to(mesh, reference), view, PICTURE_RES,
                                backend=backend)
        tiles += [color[0].flip(0), gap]  # raster row 0 is the bottom
    write_image(path, torch.cat(tiles[:-1], dim=1))


def _threejs_scores(result: SimplifyResult, reference: Mesh, views: int, res: int
                    ) -> dict[str, float] | str:
    """Held-out PSNR of qem_bake.glb and mesh.glb in three.js, or why not."""
    import difflod
    from difflod.evaluate.evaluate import evaluate
    from difflod.evaluate.threejs import RendererUnavailable

    files = {BASELINE_NAME: result.out_dir / f"{BASELINE_NAME}.glb",
             "difflod": result.out_dir / "mesh.glb"}
    try:
        scores = evaluate(reference, {k: difflod.load(p) for k, p in files.items()},
                          files=files, views=views, res=res, with_flip=False,
                          chamfer_samples=2000, renderer="threejs")
    except RendererUnavailable as err:
        return str(err).splitlines()[0]
    return {k: float(scores["candidates"][k]["psnr"]["mean"]) for k in files}


def _line(where: str, bake: float, after: float) -> str:
    return (f"held-out PSNR, {where}: QEM + texture bake {bake:.2f} dB -> "
            f"difflod {after:.2f} dB ({after - bake:+.2f} dB)")


def run_demo(out_root: str | Path = "out", iterations: int | None = None,
             backend: str | None = None, device: str | None = None,
             quiet: bool = False, threejs: bool = True) -> SimplifyResult:
    """Run the demo into `out_root`/demo and print the held-out PSNRs.

    Args:
        out_root: the folder that gets demo/.
        iterations: overrides DEMO_SETTINGS' iterations.
        backend, device: as the config keys (default: auto).
        quiet: no progress output (the results are printed still).
        threejs: also score the files in three.js, when Chromium and three exist.
    """
    from difflod.io.atomic import atomic_write_text
    from difflod.models import open_model

    overrides = dict(DEMO_SETTINGS)
    if iterations is not None:
        overrides["iter"] = iterations
    if backend is not None:
        overrides["backend"] = backend
    if device is not None:
        overrides["device"] = device
    config = simplify_config(None, overrides)
    reference = open_model(DEMO_REFERENCE)
    result = simplify(reference, DEMO_TRIANGLES, Path(out_root) / config.out_dir,
                      config=config, quiet=quiet)
    print(f"difflod: {config.iter} iterations in {result.seconds:.0f} s")
    if result.metrics is not None:
        cands = result.metrics["candidates"]
        print(_line(f"{config.eval_views} views, difflod's renderer",
                    float(cands[BASELINE_NAME]["psnr"]["mean"]),
                    float(cands["difflod"]["psnr"]["mean"])))
    if threejs:
        tj = _threejs_scores(result, reference, config.eval_views, config.eval_res)
        if isinstance(tj, str):
            print(f"three.js scores skipped: {tj}")
        else:
            atomic_write_text(result.out_dir / "metrics_threejs.json",
                              json.dumps({"renderer": "threejs", "views": config.eval_views,
                                          "res": config.eval_res, "psnr": tj}, indent=1))
            print(_line(f"{config.eval_views} views, three.js", tj[BASELINE_NAME],
                        tj["difflod"]))
    _picture(result.out_dir / PICTURE_NAME, reference, [result.baseline, result.mesh],
             config.camera_eye, config.render_backend)
    print(f"results in {result.out_dir} ({PICTURE_NAME}: reference | QEM + texture bake "
          f"| difflod)")
    return result
