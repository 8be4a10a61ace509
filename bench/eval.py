"""Benchmark of `difflod eval`: a reference against candidates, with its report.

Defaults: the demo's reference (spiky, 30k triangles) against two candidates
(spiky at 1k triangles, a 1k-triangle sphere), 64 views at 512^2, report
written. Rows: the evaluate and report stages (metrics.json "timings"), the
whole call, and with --parts what the evaluation is made of, each timed
alone on the same pictures: the renders, PSNR, SSIM, FLIP, IoU, Chamfer.
Wall and process CPU seconds (all threads; steadier than wall time on a
shared machine).

    python bench/eval.py [--views 64] [--res 512] [--backend cpu] [--parts] [--json]
                         [--reference SPEC] [--candidates SPEC,SPEC]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REFERENCE = "asset:spiky?triangles=30000&texture_res=512"
CANDIDATES = "asset:spiky?triangles=1000&texture_res=256,asset:sphere?triangles=1000"


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def parts(args: argparse.Namespace, specs: list[str]) -> list[dict]:
    """Each piece of the evaluation alone, on the same renders."""

    from difflod.evaluate import metrics
    from difflod.evaluate.evaluate import normalize_to, render_views
    from difflod.models import open_model
    from difflod.scene.views import fixed_views

    views = fixed_views(args.views, 0)
    ref = open_model(args.reference)
    ref_n = normalize_to(ref, ref)
    rows = []
    (rc, ra), w, c = timed(lambda: render_views(ref_n, views, args.res, backend=args.backend))
    rows.append({"part": "render reference", "wall_s": w, "cpu_s": c})
    cands = [normalize_to(open_model(s), ref) for s in specs]
    pics = []
    for k, m in enumerate(cands):
        out, w, c = timed(lambda m=m: render_views(m, views, args.res, backend=args.backend))
        pics.append(out)
        rows.append({"part": f"render candidate {k}", "wall_s": w, "cpu_s": c})
    n = args.views
    jobs = {
        "psnr": lambda col, al: [metrics.psnr(rc[i], col[i]) for i in range(n)],
        "ssim": lambda col, al: metrics.ssim_per_image(rc, col),
        "flip": lambda col, al: [metrics.flip(rc[i], col[i]) for i in range(n)],
        "iou": lambda col, al: [metrics.silhouette_iou(ra[i], al[i]) for i in range(n)],
    }
    for name, job in jobs.items():
        w = c = 0.0
        for col, al in pics:
            _, dw, dc = timed(lambda col=col, al=al, job=job: job(col, al))
            w, c = w + dw, c + dc
        rows.append({"part": f"{name} (all candidates)", "wall_s": w, "cpu_s": c})

    def chamfer() -> None:
        cref = metrics.ChamferReference(ref_n)
        for m in cands:
            cref.distance(m)
    _, w, c = timed(chamfer)
    rows.append({"part": "chamfer (all candidates)", "wall_s": w, "cpu_s": c})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default=REFERENCE)
    p.add_argument("--candidates", default=CANDIDATES, help="comma-separated model specs")
    p.add_argument("--views", type=int, default=64)
    p.add_argument("--res", type=int, default=512)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--parts", action="store_true", help="also time each piece alone")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    import contextlib
    import io

    from difflod.run.eval import evaluate_models

    specs = [s for s in args.candidates.split(",") if s]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()):  # the metrics table
            results, w, c = timed(lambda: evaluate_models(
                args.reference, specs, out=Path(tmp) / "eval", views=args.views, res=args.res,
                backend=args.backend))
        for key, secs in (results.get("timings") or {}).items():
            rows.append({"part": f"stage {key.removesuffix('_s')}", "wall_s": secs,
                         "cpu_s": None})
        rows.append({"part": "difflod eval (whole call)", "wall_s": w, "cpu_s": c})
    if args.parts:
        rows += parts(args, specs)
    info = {"views": args.views, "res": args.res, "candidates": len(specs),
            "backend": args.backend, "rows": rows}
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
        return 0
    print(f"difflod eval: {len(specs)} candidates, {args.views} views at {args.res}^2, "
          f"backend {args.backend}")
    print(f"{'part':34} {'wall s':>8} {'cpu s':>8}")
    for r in rows:
        cpu = "-" if r["cpu_s"] is None else f"{r['cpu_s']:.1f}"
        print(f"{r['part']:34} {r['wall_s']:8.1f} {cpu:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
