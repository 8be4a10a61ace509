"""A self-contained HTML report of an evaluation: one folder, report.html + images.

`write_report` takes pictures and numbers already made and lays them out:
side-by-side grids (reference | candidate | FLIP error heatmap) for a few
views, a summary table (triangle budget, texture and file sizes, metrics),
the per-view metric table, loss and PSNR curves (matplotlib, Agg backend),
a turntable animation of reference and candidates side by side (animated
WebP via Pillow, GIF where Pillow lacks WebP) and the run's configuration.
The page is plain HTML with inline CSS, relative image paths, no scripts
and no external resources.

`write_report_for_run` renders what write_report needs (used by
`evaluate_into`, the evaluate-and-report stage the run/ orchestrators call);
`turntable_frames` renders a mesh turning around +Y.
Images given to write_report are sRGB-encoded `[N,H,W,3]` float in [0,1],
row 0 at the top (display order).
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from difflod.evaluate import metrics as M
from difflod.evaluate.evaluate import (
    Pictures,
    evaluate_with_pictures,
    format_table,
    jsonable,
    normalize_to,
    render_views,
    write_metrics,
)
from difflod.io.atomic import atomic_path, atomic_write_text
from difflod.io.image import write_image
from difflod.mesh import Mesh

__all__ = ["evaluate_into", "turntable_frames", "write_report", "write_report_for_run"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
 background:#f4f5f7;color:#1d2330}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:32px 0 10px;
 border-bottom:1px solid #d5d9e0;padding-bottom:4px}
p.sub{color:#5a6270;margin:0 0 12px}
table{border-collapse:collapse;background:#fff;font-size:14px;margin:6px 0}
th,td{padding:5px 10px;border-bottom:1px solid #e3e6eb;text-align:right}
th{background:#eef0f4;font-weight:600}td:first-child,th:first-child{text-align:left}
figure{margin:10px 0 18px;background:#fff;padding:10px;border-radius:6px;
 box-shadow:0 1px 2px rgba(0,0,0,.08);display:inline-block}
figure img{display:block;max-width:100%;image-rendering:auto}
figcaption{font-size:13px;color:#5a6270;margin-top:6px}
pre{background:#fff;padding:12px;border-radius:6px;font-size:12px;overflow:auto;max-height:420px}
details summary{cursor:pointer;margin:6px 0;color:#2a4f9a}
.grid{display:flex;flex-wrap:wrap;gap:14px}
"""


def _np(img: torch.Tensor | np.ndarray) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def _check_images(name: str, imgs: object) -> np.ndarray:
    a = _np(imgs)  # type: ignore[arg-type]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"write_report: {name} must be [N,H,W,3], got {tuple(a.shape)}")
    return a


def _heatmap(err: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps["magma"](np.clip(err, 0.0, 1.0))[..., :3].astype(np.float32)


def _grid(ref: np.ndarray, cand: np.ndarray, errors: np.ndarray | None = None,
          gap: int = 4) -> np.ndarray:
    """Rows = views; columns = reference | candidate | FLIP error (magma); the
    error maps `[N,H,W]` are computed here unless given."""
    rows = []
    for k, (r, c) in enumerate(zip(ref, cand)):
        if errors is None:
            err = M.flip_error_map(torch.from_numpy(r), torch.from_numpy(c))[0].numpy()
        else:
            err = errors[k]
        heat = _heatmap(err)
        pad = np.ones((r.shape[0], gap, 3), dtype=np.float32)
        rows.append(np.concatenate([r, pad, c, pad, heat], axis=1))
    sep = np.ones((gap, rows[0].shape[1], 3), dtype=np.float32)
    out = [rows[0]]
    for row in rows[1:]:
        out += [sep, row]
    return np.concatenate(out, axis=0)


def _plot_curves(path: Path, history: Sequence[dict[str, Any]]) -> bool:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    it = [h.get("iteration", i) for i, h in enumerate(history)]
    loss = [h.get("loss") for h in history]
    psnr = [h.get("psnr") for h in history]
    fig = Figure(figsize=(10, 3.4), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    pts = [(i, v) for i, v in zip(it, loss) if v is not None and math.isfinite(v) and v > 0]
    if pts:
        ax1.plot(*zip(*pts), color="#2a4f9a", lw=1.4)
        ax1.set_yscale("log")
    ax1.set_title("loss")
    ax1.set_xlabel("iteration")
    pts = [(i, v) for i, v in zip(it, psnr) if v is not None and math.isfinite(v)]
    if pts:
        ax2.plot(*zip(*pts), color="#c0392b", lw=1.4)
    ax2.set_title("PSNR (dB)")
    ax2.set_xlabel("iteration")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return True


def _write_animation(out_dir: Path, frames: dict[str, np.ndarray]) -> str:
    from PIL import Image, features

    names = list(frames)
    count = min(len(f) for f in frames.values())
    h = max(f.shape[1] for f in frames.values())
    pics = []
    for t in range(count):
        row = np.concatenate([np.pad(frames[n][t], ((0, h - frames[n].shape[1]), (0, 4), (0, 0)),
                                     constant_values=1.0) for n in names], axis=1)
        pics.append(Image.fromarray(np.round(row * 255).astype(np.uint8)))
    webp = features.check("webp")
    name = "turntable.webp" if webp else "turntable.gif"
    with atomic_path(out_dir / name) as tmp:
        kw: dict[str, Any] = {"save_all": True, "append_images": pics[1:], "duration": 80,
                              "loop": 0}
        if webp:
            pics[0].save(tmp, format="WEBP", quality=90, **kw)
        else:
            pics[0].save(tmp, format="GIF", **kw)
    return name


def _fmt(x: Any, digits: int = 2) -> str:
    if isinstance(x, str):
        return html.escape(x)
    if x is None:
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return html.escape(str(x))


def _int(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "–"


def _kib(n: Any) -> str:
    return "–" if n is None else f"{n / 1024:,.0f}"


def _summary(metrics: dict[str, Any]) -> str:
    ref = metrics.get("reference", {})
    rows = [("<tr><th>model</th><th>triangles</th><th>vertices</th><th>texture KiB</th>"
             "<th>file KiB</th><th>PSNR dB</th><th>SSIM</th><th>FLIP</th><th>IoU</th>"
             "<th>Chamfer</th></tr>")]
    rows.append(f"<tr><td>reference</td><td>{_int(ref.get('triangles'))}</td>"
                f"<td>{_int(ref.get('vertices'))}</td><td>{_kib(ref.get('texture_bytes'))}</td>"
                f"<td>{_kib(ref.get('file_bytes'))}</td>" + "<td>–</td>" * 5 + "</tr>"
                if ref else "")
    for name, c in metrics.get("candidates", {}).items():
        tri = c.get("triangles", 0)
        share = f" ({100 * tri / ref['triangles']:.1f}%)" if ref.get("triangles") else ""
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{_int(tri)}{share}</td><td>{_int(c.get('vertices'))}</td>"
            f"<td>{_kib(c.get('texture_bytes'))}</td><td>{_kib(c.get('file_bytes'))}</td>"
            f"<td>{_fmt(c.get('psnr', {}).get('mean'))}</td>"
            f"<td>{_fmt(c.get('ssim', {}).get('mean'), 4)}</td>"
            f"<td>{_fmt(c.get('flip', {}).get('mean'), 4)}</td>"
            f"<td>{_fmt(c.get('iou', {}).get('mean'), 4)}</td>"
            f"<td>{_fmt(c.get('chamfer'), 5)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _per_view(name: str, c: dict[str, Any]) -> str:
    pv = c.get("per_view") or {}
    keys = [k for k in ("psnr", "ssim", "flip", "iou") if k in pv]
    if not keys:
        return ""
    n = len(pv[keys[0]])
    head = "<tr><th>view</th>" + "".join(f"<th>{k.upper()}</th>" for k in keys) + "</tr>"
    body = "".join("<tr><td>" + str(i) + "</td>" + "".join(
        f"<td>{_fmt(pv[k][i], 2 if k == 'psnr' else 4)}</td>" for k in keys) + "</tr>"
        for i in range(n))
    return (f"<details><summary>{html.escape(name)}: {n} views</summary>"
            f"<table>{head}{body}</table></details>")


def write_report(out_dir: str | Path, *, reference_images: torch.Tensor | np.ndarray,
                 candidate_images: dict[str, torch.Tensor | np.ndarray],
                 metrics: dict[str, Any] | None = None,
                 history: Sequence[dict[str, Any]] | None = None,
                 config: dict[str, Any] | None = None,
                 turntable: dict[str, torch.Tensor | np.ndarray] | None = None,
                 flip_maps: dict[str, torch.Tensor | np.ndarray] | None = None,
                 title: str = "difflod evaluation") -> Path:
    """Write report.html and its images into `out_dir` (created); return the HTML path.

    Args:
        reference_images: `[N,H,W,3]` sRGB float in [0,1], row 0 at the top.
        candidate_images: name -> `[N,H,W,3]`, same views as the reference.
        metrics: the dict returned by evaluate.evaluate (or None).
        history: training log entries {"iteration", "loss", "psnr"} (or None).
        config: the run configuration, shown as JSON (or None).
        turntable: name -> `[T,h,w,3]` frames, shown side by side in the given
            order (put "reference" first), or None.
        flip_maps: name -> `[N,H,W]` FLIP error maps of the candidate's views (row
            0 at the top), where already computed; the others are computed here.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = _check_images("reference_images", reference_images)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    s = (metrics or {}).get("settings")
    if s:
        parts.append(f"<p class='sub'>{s.get('views')} held-out views at {s.get('res')}×"
                     f"{s.get('res')}, seed {s.get('seed')}, backend {html.escape(str(s.get('backend')))}. "
                     "Image metrics on sRGB images; Chamfer in units where the reference's "
                     "longest side is 2.</p>")
    if metrics:
        parts += ["<h2>Triangle budget, sizes and metrics</h2>", _summary(metrics)]
    parts.append("<h2>Views</h2><p class='sub'>reference | candidate | FLIP error "
                 "(black = none, yellow = large)</p>")
    for i, (name, imgs) in enumerate(candidate_images.items()):
        cand = _check_images(f"candidate_images[{name!r}]", imgs)
        if cand.shape != ref.shape:
            raise ValueError(f"write_report: candidate_images[{name!r}] is {cand.shape}, "
                             f"reference_images {ref.shape}")
        errors = (flip_maps or {}).get(name)
        if errors is not None:
            errors = _np(errors)
            if errors.shape != ref.shape[:3]:
                raise ValueError(f"write_report: flip_maps[{name!r}] is {errors.shape}, "
                                 f"expected {ref.shape[:3]}")
        fname = f"grid_{i}.png"
        write_image(out / fname, _grid(ref, cand, errors))
        parts.append(f"<figure><img src='{fname}' alt='views of {html.escape(name)}' "
                     f"width='{3 * ref.shape[2] + 8}'><figcaption>{html.escape(name)}"
                     "</figcaption></figure>")
    if turntable:
        frames = {n: _check_images(f"turntable[{n!r}]", f) for n, f in turntable.items()}
        anim = _write_animation(out, frames)
        parts.append("<h2>Turntable</h2><figure><img src='" + anim + "' alt='turntable'>"
                     "<figcaption>" + " | ".join(html.escape(n) for n in frames)
                     + "</figcaption></figure>")
    if history:
        _plot_curves(out / "curves.png", history)
        parts.append("<h2>Training</h2><figure><img src='curves.png' alt='loss and PSNR "
                     "curves' width='1000'></figure>")
    if metrics and metrics.get("candidates"):
        parts.append("<h2>Per-view metrics</h2>")
        parts += [_per_view(n, c) for n, c in metrics["candidates"].items()]
    if config:
        parts.append("<h2>Configuration</h2><pre>"
                     + html.escape(json.dumps(jsonable(config), indent=2, sort_keys=True))
                     + "</pre>")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>"
            + "\n".join(parts) + "</main></body></html>\n")
    path = out / "report.html"
    atomic_write_text(path, page)
    return path


@torch.no_grad()
def turntable_frames(mesh: Mesh, count: int, res: int, *, backend: str | None = None,
                     distance: float = 3.5, elevation: float = 0.35) -> torch.Tensor:
    """Render `mesh` (already in normalized space) from `count` eyes around +Y.

    Returns:
        `[count,res,res,3]` float32 sRGB in [0,1], row 0 at the top.
    """
    from difflod.scene.views import Views, views_from_eye

    if count < 1:
        raise ValueError(f"turntable_frames: count must be >= 1, got {count}")
    vs = []
    for k in range(count):
        a = 2 * math.pi * k / count
        eye = (distance * math.cos(elevation) * math.sin(a), distance * math.sin(elevation),
               distance * math.cos(elevation) * math.cos(a))
        vs.append(views_from_eye(eye))
    views = Views(mvp=torch.cat([v.mvp for v in vs]), campos=torch.cat([v.campos for v in vs]),
                  lightpos=torch.cat([v.lightpos for v in vs]), light_power=vs[0].light_power)
    color, _ = render_views(mesh, views, res, backend=backend)
    return color.flip(1)


def _display(images: torch.Tensor, size: int) -> torch.Tensor:
    """`[N,H,W(,C)]` raster-order pictures → row 0 at the top, area-averaged to
    at most `size` pixels a side."""
    x = images.flip(1).float()
    if x.shape[1] <= size:
        return x
    chw = x.permute(0, 3, 1, 2) if x.dim() == 4 else x[:, None]
    small = torch.nn.functional.interpolate(chw, size=(size, size), mode="area")
    return small.permute(0, 2, 3, 1) if x.dim() == 4 else small[:, 0]


@torch.no_grad()
def write_report_for_run(out_dir: str | Path, reference: Mesh, candidates: dict[str, Mesh],
                         results: dict[str, Any], *, history: Sequence[dict[str, Any]] | None = None,
                         config: dict[str, Any] | None = None, backend: str | None = None,
                         res: int = 512, grid_views: int = 4, turntable: int = 24,
                         pictures: Pictures | None = None,
                         device: torch.device | str | None = None) -> Path:
    """The grids of a few evaluation views and a turntable, then `write_report`.

    With `pictures` (from evaluate_with_pictures) the grids show the very
    renders and FLIP maps that were scored, area-averaged to at most 256
    pixels; without, the views of `results["settings"]` (seed) are rendered
    again at that size. The turntable is rendered here (160 pixels); meshes
    are normalized as in evaluate, and rendered on `device` (None: the
    reference's).
    """
    from difflod.scene.views import fixed_views

    gres = min(res, 256)
    if device is not None:
        reference = reference.to(device)
        candidates = {name: m.to(device) for name, m in candidates.items()}
    ref_n = normalize_to(reference, reference)
    normed = {name: normalize_to(m, reference) for name, m in candidates.items()}
    flip_maps = None
    if pictures is not None and len(pictures.reference) \
            and all(name in pictures.candidates for name in candidates):
        ref_img = _display(pictures.reference[:grid_views], gres)
        cand_img = {name: _display(pictures.candidates[name][:grid_views], gres)
                    for name in candidates}
        if all(name in pictures.flip for name in candidates):
            flip_maps = {name: _display(pictures.flip[name][:grid_views], gres)
                         for name in candidates}
    else:
        seed = int(results.get("settings", {}).get("seed", 0))
        n = max(1, min(grid_views, int(results.get("settings", {}).get("views", grid_views))))
        views = fixed_views(n, seed)
        ref_img = render_views(ref_n, views, gres, backend=backend)[0].flip(1)
        cand_img = {name: render_views(m, views, gres, backend=backend)[0].flip(1)
                    for name, m in normed.items()}
    frames = None
    if turntable > 0:
        tres = min(res, 160)
        frames = {"reference": turntable_frames(ref_n, turntable, tres, backend=backend)}
        for name, m in normed.items():
            frames[name] = turntable_frames(m, turntable, tres, backend=backend)
    return write_report(out_dir, reference_images=ref_img, candidate_images=cand_img,
                        metrics=results, history=history, config=config, turntable=frames,
                        flip_maps=flip_maps)


def evaluate_into(out_dir: str | Path | None, reference: Mesh, candidates: dict[str, Mesh], *,
                  views: int, res: int, seed: int, backend: str | None,
                  files: dict[str, Path] | None = None, extra: dict[str, Any] | None = None,
                  history: Sequence[dict[str, Any]] | None = None,
                  config: dict[str, Any] | None = None, quiet: bool = False,
                  renderer: str = "difflod",
                  on_stage: Callable[[str], None] | None = None,
                  device: torch.device | str | None = None) -> dict[str, Any]:
    """The whole evaluation job of `difflod eval`, `train` and `simplify`.

    Evaluates the candidates, adds `extra` keys to the results, prints the
    table unless `quiet`, and with an `out_dir` writes report/ and then
    metrics.json. `on_stage("evaluate")` and `on_stage("report")` are called
    as those stages begin; the results get "timings": {"evaluate_s",
    "report_s"} (wall seconds), merged into `extra`'s "timings" if any.
    Both stages render and score on `device` (None: the reference's).
    """
    clock = time.perf_counter
    if on_stage is not None:
        on_stage("evaluate")
    t0 = clock()
    grid_views = 4
    results, pictures = evaluate_with_pictures(
        reference, candidates, views=views, res=res, seed=seed, backend=backend, files=files,
        renderer=renderer, keep=grid_views if out_dir is not None else 0, device=device)
    extra = dict(extra or {})
    timings = {**extra.pop("timings", {}), "evaluate_s": clock() - t0}
    results.update(extra)
    results["timings"] = timings
    if not quiet:
        print(format_table(results))
    if out_dir is not None:
        if on_stage is not None:
            on_stage("report")
        t0 = clock()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_report_for_run(out / "report", reference, candidates, results, history=history,
                             config=config, backend=backend, res=res, grid_views=grid_views,
                             pictures=pictures, device=device)
        timings["report_s"] = clock() - t0
        write_metrics(out / "metrics.json", results)
    return results
