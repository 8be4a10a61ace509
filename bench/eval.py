"""Benchmark of `difflod eval`: a reference against candidates, with its report.

Defaults: the demo's reference (spiky, 30k triangles) against two candidates
(spiky at 1k triangles, a 1k-triangle sphere), 64 views at 512^2, report
written. Rows: the evaluate and report stages (metrics.json "timings"), the
whole call, and with --parts what the evaluation is made of, each timed
alone on the same pictures, on `--device`: the renders, PSNR, SSIM, FLIP
(difflod's torch FLIP, which the evaluation uses; on the CPU also
flip-evaluator, the library, for comparison), IoU, Chamfer, the report.
Wall and process CPU seconds (all threads; steadier than wall time on a
shared machine). `--repeat 2` runs the whole call twice and reports the
second (after warm-up: kernels compiled or loaded, the GPU's allocator and
cuDNN's choices made).

    python bench/eval.py [--views 64] [--res 512] [--device auto|cpu|cuda]
                         [--backend auto] [--parts] [--repeat N] [--json]
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


def timed(fn: Callable[[], Any], device: Any = None) -> tuple[Any, float, float]:
    """fn's result, wall and process CPU seconds; waits for a GPU's queued work."""
    import torch

    def sync() -> None:
        if device is not None and torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return out, time.perf_counter() - w, time.process_time() - c


def parts(args: argparse.Namespace, specs: list[str], device: Any) -> list[dict]:
    """Each piece of the evaluation alone, on the same renders, as evaluate runs it."""
    from difflod.evaluate import metrics
    from difflod.evaluate.evaluate import Pictures, normalize_to, render_views
    from difflod.evaluate.report import write_report_for_run
    from difflod.models import open_model
    from difflod.scene.views import fixed_views

    backend = None if args.backend == "auto" else args.backend
    views = fixed_views(args.views, 0)
    ref = open_model(args.reference).to(device)
    ref_n = normalize_to(ref, ref)
    rows = []

    def row(part: str, fn: Callable[[], Any]) -> Any:
        out, w, c = timed(fn, device)
        rows.append({"part": part, "wall_s": w, "cpu_s": c})
        return out

    rc, ra = row("render reference", lambda: render_views(ref_n, views, args.res,
                                                          backend=backend))
    cands = [normalize_to(open_model(s).to(device), ref) for s in specs]
    pics = [row(f"render candidate {k}", lambda m=m: render_views(m, views, args.res,
                                                                  backend=backend))
            for k, m in enumerate(cands)]
    jobs: dict[str, Callable[[Any, Any], Any]] = {
        "psnr": lambda col, al: metrics.psnr_per_image(rc, col).tolist(),
        "ssim": lambda col, al: metrics.ssim_per_image(rc, col).tolist(),
        "flip": lambda col, al: metrics.flip_per_image(rc, col, keep=4)[0].tolist(),
        "iou": lambda col, al: metrics.silhouette_iou_per_image(ra, al).tolist(),
    }
    if device.type == "cpu":  # the library, one picture per call
        jobs["flip (flip-evaluator)"] = lambda col, al: [metrics.flip(rc[i], col[i])
                                                          for i in range(len(col))]
    for name, job in jobs.items():
        row(f"{name} (all candidates)",
            lambda job=job: [job(col, al) for col, al in pics])

    def chamfer() -> None:
        cref = metrics.ChamferReference(ref_n)
        for m in cands:
            cref.distance(m)
    row("chamfer (all candidates)", chamfer)
    names = [f"c{k}" for k in range(len(cands))]
    keep = min(4, args.views)
    flips = {n: metrics.flip_per_image(rc[:keep], col[:keep], keep=keep)[1].cpu()
             for n, (col, _) in zip(names, pics)}
    pictures = Pictures(reference=rc[:keep].cpu(),
                        candidates={n: col[:keep].cpu() for n, (col, _) in zip(names, pics)},
                        flip=flips)
    results = {"settings": {"views": args.views, "res": args.res, "seed": 0},
               "reference": {"triangles": ref.num_triangles}, "candidates": {}}
    models = dict(zip(names, [open_model(s) for s in specs]))
    with tempfile.TemporaryDirectory() as tmp:
        row("report (grids, turntable, page)", lambda: write_report_for_run(
            Path(tmp) / "report", ref, models, results, backend=backend, res=args.res,
            pictures=pictures, device=device))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default=REFERENCE)
    p.add_argument("--candidates", default=CANDIDATES, help="comma-separated model specs")
    p.add_argument("--views", type=int, default=64)
    p.add_argument("--res", type=int, default=512)
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--parts", action="store_true", help="also time each piece alone")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the whole call this many times; report the last")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    import contextlib
    import io

    from difflod.run.eval import eval_device, evaluate_models

    device = eval_device(args.device, args.backend)
    specs = [s for s in args.candidates.split(",") if s]
    rows: list[dict] = []
    for _ in range(max(1, args.repeat)):
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            with contextlib.redirect_stdout(io.StringIO()):  # the metrics table
                results, w, c = timed(lambda tmp=tmp: evaluate_models(
                    args.reference, specs, out=Path(tmp) / "eval", views=args.views,
                    res=args.res, backend=args.backend, device=str(device)), device)
            for key, secs in (results.get("timings") or {}).items():
                rows.append({"part": f"stage {key.removesuffix('_s')}", "wall_s": secs,
                             "cpu_s": None})
            rows.append({"part": "difflod eval (whole call)", "wall_s": w, "cpu_s": c})
    if args.parts:
        rows += parts(args, specs, device)
    info = {"views": args.views, "res": args.res, "candidates": len(specs),
            "backend": args.backend, "device": str(device), "repeat": args.repeat,
            "rows": rows}
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
        return 0
    print(f"difflod eval: {len(specs)} candidates, {args.views} views at {args.res}^2, "
          f"backend {args.backend}, device {device}, run {max(1, args.repeat)} of "
          f"{max(1, args.repeat)}")
    print(f"{'part':34} {'wall s':>8} {'cpu s':>8}")
    for r in rows:
        cpu = "-" if r["cpu_s"] is None else f"{r['cpu_s']:.1f}"
        print(f"{r['part']:34} {r['wall_s']:8.1f} {cpu:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
