"""`difflod demo`: the main job on an embedded default, with no files needed.

It runs `difflod simplify` on a procedural "spiky" model (tens of thousands
of triangles, PBR textures, a detailed normal map): a QEM base mesh of a few
hundred triangles is made from it, its textures start from noise (as in
nvdiffmodeling's examples), and appearance-driven optimization on this
machine fits geometry and textures. out/demo gets the final model, progress
images, metrics and the HTML report; the terminal gets the held-out PSNR of
the initial guess (QEM geometry, random textures), of the usual pipeline
(QEM + texture bake, for comparison) and of the result.
"""

from __future__ import annotations

from pathlib import Path

from difflod.run.simplify import (
    BASELINE_NAME,
    INITIAL_NAME,
    SimplifyResult,
    simplify,
    simplify_config,
)

__all__ = ["DEMO_REFERENCE", "DEMO_SETTINGS", "DEMO_TRIANGLES", "run_demo"]

DEMO_REFERENCE = "asset:spiky?triangles=30000&texture_res=512"
DEMO_TRIANGLES = 400

# Sized to finish in a few minutes on a 2-core laptop CPU.
DEMO_SETTINGS: dict = {
    "out_dir": "demo",
    "init_textures": "random",
    "iter": 650,
    "batch": 2,
    "train_res": 256,
    "display_res": 256,
    "texture_res": [256, 256],
    "learning_rate": [0.002, 0.03],
    "save_interval": 100,
    "camera_eye": [2.5, 0.0, 2.5],
    "eval_views": 16,
    "eval_res": 256,
}


def run_demo(out_root: str | Path = "out", iterations: int | None = None,
             backend: str | None = None, device: str | None = None,
             quiet: bool = False) -> SimplifyResult:
    """Run the demo into `out_root`/demo and print the before/after PSNR."""
    overrides = dict(DEMO_SETTINGS)
    if iterations is not None:
        overrides["iter"] = iterations
    if backend is not None:
        overrides["backend"] = backend
    if device is not None:
        overrides["device"] = device
    config = simplify_config(None, overrides)
    result = simplify(DEMO_REFERENCE, DEMO_TRIANGLES, Path(out_root) / config.out_dir,
                      config=config, quiet=quiet)
    if result.metrics is not None:
        cands = result.metrics.get("candidates", {})

        def psnr(name: str) -> float:
            return float(cands[name]["psnr"]["mean"])

        before, after = psnr(INITIAL_NAME), psnr("difflod")
        print(f"held-out PSNR: initial guess {before:.2f} dB -> difflod {after:.2f} dB "
              f"({after - before:+.2f} dB); QEM + texture bake {psnr(BASELINE_NAME):.2f} dB")
    print(f"results in {result.out_dir}")
    return result
