"""Held-out evaluation: render a reference and candidates under the same views, compare.

`evaluate` normalizes the reference to unit size (nvdiffmodeling's
centring: AABB centred on the origin, longest side 2) and moves every
candidate by the *same* transform, so a candidate that drifted or shrank is
penalised. All meshes are rendered with the same shading, the same fixed
evaluation views (`difflod.scene.views.fixed_views(views, seed)`) and a
black background, in chunks of views to bound memory. Image metrics are
computed on sRGB-encoded, clamped images (see metrics.py); Chamfer distance
is in the normalized space (reference's longest side = 2).

Device: every mesh is moved to `device` (default: the reference's), rendered
there, and its pictures stay there: PSNR, SSIM, FLIP and IoU are computed on
the device for all views at once (metrics.py `*_per_image`), and only the
per-view numbers and the report's few pictures (`Pictures`) come to the CPU.
`backend` must be able to serve that device ("cuda" a GPU, "cpu" the CPU).

The result is a plain dict (JSON-ready but for infinities):

    {"settings": {"views", "res", "seed", "backend", "renderer", "device"},
     "reference": {"triangles", "vertices", "texture_bytes", "file_bytes"?},
     "candidates": {name: {"triangles", "vertices", "texture_bytes", "file_bytes"?,
                           "psnr": {"mean", "min", "max"}, "ssim": {...}, "flip": {...},
                           "iou": {...}, "outline": {...}, "chamfer": float,
                           "per_view": {"psnr": [...], "ssim": [...], "flip": [...],
                                        "iou": [...], "outline": [...]}}}}

"outline" is the share of a view's squared error within 2 pixels of the
reference's silhouette (metrics.outline_share_per_image): where what is left
to fix lies, the outline (triangles) or the surface (textures, shading).

`renderer="threejs"` renders every model with three.js in headless Chromium
instead (evaluate/threejs.py): the model's own glTF/GLB file where `files`
names one, else the Mesh written to a temporary GLB by difflod's writer; the
same views, light and normalization; the same metrics on the pictures.

A PSNR of identical images is `math.inf`; `write_metrics` writes every
infinity as the JSON string "inf" (and -inf as "-inf"), since JSON has no
infinity and Python's `Infinity` token is not valid JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from difflod.evaluate import metrics
from difflod.mesh import TEXTURE_FIELDS, Mesh

__all__ = [
    "RENDERERS",
    "Pictures",
    "evaluate",
    "evaluate_with_pictures",
    "format_table",
    "jsonable",
    "normalize_to",
    "render_threejs",
    "render_views",
    "texture_bytes",
    "write_metrics",
]

#: views rendered at once (memory bound: chunk x res^2 x layers)
CHUNK = 8

RENDERERS = ("difflod", "threejs")


def texture_bytes(mesh: Mesh) -> int:
    """Bytes of all material textures stored as 8-bit channels (H*W*C per texture);
    an image that several materials share (base/opaque_split.py; read back from a
    file, equal copies) counts once, as the glTF writer stores it once; a 1x1
    texture is a factor of each material."""
    total, seen = 0, []
    for m in mesh.materials:
        for tex in (getattr(m, name) for name in TEXTURE_FIELDS):
            if tex is None:
                continue
            if tex.shape[0] * tex.shape[1] > 1:
                if any(t is tex or (t.shape == tex.shape and torch.equal(t, tex)) for t in seen):
                    continue
                seen.append(tex)
            total += int(tex.numel())
    return total


def normalize_to(mesh: Mesh, reference: Mesh) -> Mesh:
    """Move `mesh` by the transform that centres `reference`'s AABB and makes its
    longest side 2 (nvdiffmodeling's centring); normalize_to(ref, ref) is unit_size."""
    from difflod.geometry.transform import center_by_reference

    return center_by_reference(mesh, reference.aabb(), 2.0)


def _layers(mesh: Mesh) -> int:
    return 4 if any(m.has_alpha for m in mesh.materials) else 1


@torch.no_grad()
def render_views(mesh: Mesh, views: Any, res: int, *, backend: str | None = None,
                 chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Render `mesh` (already normalized) under `views` on a black background.

    Returns:
        (sRGB-encoded clamped colour `[B,res,res,3]`, alpha `[B,res,res,1]`), float32 on
        the mesh's device, rows in raster order (row 0 = bottom; flip for pictures).
    """
    from difflod.render.pipeline import render_mesh
    from difflod.scene.views import background

    colors, alphas = [], []
    for start in range(0, len(views), chunk):
        v = views[start:start + chunk].to(mesh.device)
        bg = background("black", len(v), res, res, device=mesh.device)
        out = render_mesh(mesh, v, (res, res), layers=_layers(mesh), background=bg,
                          backend=backend)
        colors.append(metrics.to_srgb(out.color.float()))
        alphas.append(out.alpha.float())
    return torch.cat(colors), torch.cat(alphas)


def render_threejs(reference: Mesh, meshes: dict[str, Mesh], views: Any, res: int,
                   files: dict[str, Path] | None = None
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Render `meshes` (name -> un-normalized Mesh) with three.js under `views`.

    Each model is its file in `files` when that is a .glb/.gltf, else the Mesh
    written as a temporary GLB; all are placed by the normalization of
    `reference`. Returns name -> (sRGB-encoded clamped colour `[B,res,res,3]`,
    alpha `[B,res,res,1]`), as render_views.
    """
    import tempfile

    from difflod.evaluate.threejs import render_gltf
    from difflod.geometry.transform import reference_matrix
    from difflod.io import save
    from difflod.scene import camera

    matrix = reference_matrix(reference.aabb(), 2.0).numpy()
    proj = camera.perspective(camera.DEFAULT_FOVY, 1.0, 0.1, 1000.0)
    with tempfile.TemporaryDirectory(prefix="difflod-eval-") as tmp:
        models = []
        for k, (name, mesh) in enumerate(meshes.items()):
            file = (files or {}).get(name)
            if file is None or Path(file).suffix.lower() not in (".glb", ".gltf"):
                file = Path(tmp) / f"model{k}.glb"
                save(mesh, file)
            models.append((Path(file), matrix))
        images = render_gltf(models, views.mvp, proj, views.lightpos, views.light_power, res)
    return {name: (metrics.to_srgb(color), alpha)
            for name, (color, alpha) in zip(meshes, images)}


def _stats(values: Sequence[float]) -> dict[str, float]:
    vals = list(values)
    mean = math.inf if any(math.isinf(x) and x > 0 for x in vals) else sum(vals) / len(vals)
    return {"mean": mean, "min": min(vals), "max": max(vals)}


def _facts(mesh: Mesh, file: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"triangles": mesh.num_triangles, "vertices": mesh.num_vertices,
                           "texture_bytes": texture_bytes(mesh)}
    if file is not None and Path(file).is_file():
        out["file_bytes"] = Path(file).stat().st_size
    return out


@dataclass
class Pictures:
    """The evaluation's own renders of its first views, kept for the report.

    Attributes:
        reference: `[N,res,res,3]` float32 sRGB in [0,1] on the CPU, raster order
            (row 0 = bottom), the first N evaluation views.
        candidates: name -> `[N,res,res,3]`, the same views.
        flip: name -> `[N,res,res]` float32 FLIP error maps of those views
            (empty without FLIP).
    """

    reference: torch.Tensor
    candidates: dict[str, torch.Tensor] = field(default_factory=dict)
    flip: dict[str, torch.Tensor] = field(default_factory=dict)


def evaluate(reference: Mesh, candidates: dict[str, Mesh] | Sequence[Mesh], *, views: int = 64,
             res: int = 512, seed: int = 0, backend: str | None = None,
             files: dict[str, Path] | None = None, chamfer_samples: int = 100_000,
             with_flip: bool = True, renderer: str = "difflod",
             device: torch.device | str | None = None) -> dict[str, Any]:
    """Compare candidates with a reference on `views` held-out views.

    Args:
        reference: the reference mesh.
        candidates: name -> mesh, or a list (named "candidate0", "candidate1", ...).
        views: number of fixed evaluation views; res: square image size.
        seed: evaluation-view seed (its own seed space, see views.eval_generator).
        backend: render backend name, None for the default.
        files: name -> model file, to report file sizes ("reference" for the reference).
        chamfer_samples: surface samples per mesh for the Chamfer distance.
        with_flip: compute FLIP (the slowest metric).
        renderer: "difflod" (its own renderer, `backend`) or "threejs" (see
            the module docstring).
        device: where the meshes are rendered and scored (None: the reference's).
    Returns:
        The results dict described in the module docstring.
    """
    return evaluate_with_pictures(reference, candidates, views=views, res=res, seed=seed,
                                  backend=backend, files=files, chamfer_samples=chamfer_samples,
                                  with_flip=with_flip, renderer=renderer, keep=0,
                                  device=device)[0]


def evaluate_with_pictures(reference: Mesh, candidates: dict[str, Mesh] | Sequence[Mesh], *,
                           views: int = 64, res: int = 512, seed: int = 0,
                           backend: str | None = None, files: dict[str, Path] | None = None,
                           chamfer_samples: int = 100_000, with_flip: bool = True,
                           renderer: str = "difflod", keep: int = 4,
                           device: torch.device | str | None = None
                           ) -> tuple[dict[str, Any], Pictures]:
    """`evaluate`, also returning the renders and FLIP maps of the first `keep`
    views, so that the report shows the very pictures that were scored."""
    if views < 1:
        raise ValueError(f"evaluate: views must be >= 1, got {views}")
    if res < 11:
        raise ValueError(f"evaluate: res must be >= 11 (SSIM window), got {res}")
    if renderer not in RENDERERS:
        raise ValueError(f"evaluate: renderer must be one of {RENDERERS}, got {renderer!r}")
    if not isinstance(candidates, dict):
        candidates = {f"candidate{i}": m for i, m in enumerate(candidates)}
    files = dict(files or {})
    keep = max(0, min(keep, views))
    from difflod.scene.views import fixed_views

    eval_views = fixed_views(views, seed)
    device = torch.device(device) if device is not None else reference.device
    reference = reference.to(device)
    ref_n = normalize_to(reference, reference)
    rendered = None
    if renderer == "threejs":
        rendered = {name: (c.to(device), a.to(device)) for name, (c, a) in render_threejs(
            reference, {"reference": reference, **candidates}, eval_views, res, files).items()}
        ref_color, ref_alpha = rendered["reference"]
    else:
        from difflod.render.backends import warm_up

        # a first run's CPU render kernels compiled ahead, in parallel processes
        warm_up(backend, device, train=False)
        ref_color, ref_alpha = render_views(ref_n, eval_views, res, backend=backend)
    results: dict[str, Any] = {
        "settings": {"views": views, "res": res, "seed": seed, "backend": backend or "auto",
                     "renderer": renderer, "device": str(device)},
        "reference": _facts(reference, files.get("reference")),
        "candidates": {},
    }
    # copies: a slice would keep the whole batch of pictures alive
    pictures = Pictures(reference=ref_color[:keep].to("cpu", copy=True))
    chamfer = metrics.ChamferReference(ref_n, samples=chamfer_samples, seed=seed)
    for name, cand in candidates.items():
        cand_n = normalize_to(cand.to(device), reference)
        if rendered is not None:
            color, alpha = rendered[name]
        else:
            color, alpha = render_views(cand_n, eval_views, res, backend=backend)
        scores = {"psnr": metrics.psnr_per_image(ref_color, color),
                  "ssim": metrics.ssim_per_image(ref_color, color),
                  "iou": metrics.silhouette_iou_per_image(ref_alpha, alpha),
                  "outline": metrics.outline_share_per_image(ref_color, color, ref_alpha)}
        pictures.candidates[name] = color[:keep].to("cpu", copy=True)
        if with_flip:
            scores["flip"], maps = metrics.flip_per_image(ref_color, color, keep=keep)
            if keep:
                pictures.flip[name] = maps.to("cpu", copy=True)
        # one read-back of every per-view number
        per_view = dict(zip(scores, torch.stack(list(scores.values())).cpu().tolist()))
        entry = _facts(cand, files.get(name))
        for key, vals in per_view.items():
            entry[key] = _stats(vals)
        entry["chamfer"] = chamfer.distance(cand_n)
        entry["per_view"] = per_view
        results["candidates"][name] = entry
    return results, pictures


def _fmt(x: float, digits: int = 2) -> str:
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def format_table(results: dict[str, Any]) -> str:
    """A fixed-width text table of the results (one row per candidate) for the terminal."""
    head = ["model", "tris", "verts", "PSNR mean [min,max]", "SSIM", "FLIP", "IoU", "chamfer",
            "tex KiB", "file KiB"]
    rows = []
    ref = results["reference"]
    rows.append(["reference", str(ref["triangles"]), str(ref["vertices"]), "-", "-", "-", "-",
                 "-", f"{ref['texture_bytes'] / 1024:.0f}",
                 f"{ref['file_bytes'] / 1024:.0f}" if "file_bytes" in ref else "-"])
    for name, c in results["candidates"].items():
        p = c["psnr"]
        rows.append([
            name, str(c["triangles"]), str(c["vertices"]),
            f"{_fmt(p['mean'])} [{_fmt(p['min'])},{_fmt(p['max'])}]",
            _fmt(c["ssim"]["mean"], 4),
            _fmt(c["flip"]["mean"], 4) if "flip" in c else "-",
            _fmt(c["iou"]["mean"], 4), f"{c['chamfer']:.2e}",
            f"{c['texture_bytes'] / 1024:.0f}",
            f"{c['file_bytes'] / 1024:.0f}" if "file_bytes" in c else "-",
        ])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    s = results.get("settings")
    if s:
        how = "three.js" if s.get("renderer") == "threejs" else f"backend {s['backend']}"
        if s.get("device"):
            how += f" on {s['device']}"
        lines.append(f"({s['views']} views at {s['res']}x{s['res']}, seed {s['seed']}, "
                     f"{how}; image metrics on sRGB)")
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """A copy of `value` with infinities as "inf"/"-inf", NaN as "nan", Paths as str,
    tensors as lists, tuples as lists."""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    return value


def write_metrics(path: str | Path, results: dict[str, Any]) -> None:
    """Write `results` as indented JSON, atomically; infinities become the string "inf"."""
    from difflod.io.atomic import atomic_write_text

    text = json.dumps(jsonable(results), indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text)
