"""Benchmark of `difflod batch`: models per hour on the local pool and on Ray.

A library of procedural models (difflod.assets, each asset with several
seeds) at two budgets, simplified at small settings, once on the local
process pool and once on a private Ray instance of this machine
(`--ray local`, one task per model); each in a fresh output folder. For
each executor the table gives the wall time, the throughput, the seconds
spent inside the models (run_model's own clock, summed) and the overhead
per model: (wall x slots - model seconds) / models, i.e. what the executor
adds per model (process start, imports, scheduling, transport). A last row
times Ray's bare per-task cost (empty tasks on the same instance).

Each (model, budget) is one job unless --chain makes the budgets one LOD
chain per model (which needs simplify to accept a list of budgets).

    python bench/batch.py [--models 20] [--budgets 25%,10%] [--triangles 400]
                          [--iter 5] [--res 32] [--slots N] [--json]
                          [--batch 1] [--texture-res 32] [--eval-views 2]
                          [--device cpu|cuda] [--executors pool,ray]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from difflod.assets import ASSETS
from difflod.run.batch import batch

#: assets that simplify takes at a few hundred triangles
_BENCH_ASSETS = [a for a in ASSETS if a != "skinned_cylinder"]


def _manifest(folder: Path, args: argparse.Namespace) -> Path:
    rows = []
    budgets = args.budgets.split(",")
    for k in range(args.models):
        asset, seed = _BENCH_ASSETS[k % len(_BENCH_ASSETS)], k // len(_BENCH_ASSETS)
        model = f"asset:{asset}?triangles={args.triangles}&texture_res=32&seed={seed}"
        if args.chain:
            rows.append({"model": model, "name": f"m{k:03d}", "triangles": budgets})
        else:
            rows += [{"model": model, "name": f"m{k:03d}_b{j}", "triangles": b}
                     for j, b in enumerate(budgets)]
    path = folder / "manifest.json"
    path.write_text(json.dumps(rows))
    return path


def _run(kind: str, manifest: Path, out: Path, args: argparse.Namespace) -> dict:
    overrides = {"iter": args.iter, "train_res": args.res, "batch": args.batch,
                 "texture_res": [args.texture_res] * 2, "eval_views": args.eval_views,
                 "eval_res": args.res, "save_interval": 1000, "log_interval": 1000,
                 "backend": "cpu" if args.device == "cpu" else "auto", "device": args.device}
    start = time.perf_counter()
    if kind == "pool":
        result = batch(manifest, out, overrides=overrides, workers=args.slots, threads=1,
                       quiet=True)
    else:
        result = batch(manifest, out, overrides=overrides, ray="local", threads=1, quiet=True)
    wall = time.perf_counter() - start
    records = [json.loads((out / n / "batch.json").read_text()) for n in result.completed]
    inside = sum(r["seconds"] for r in records)
    n = len(result.completed)
    return {"executor": kind, "jobs": n + len(result.failed), "completed": n,
            "failed": len(result.failed), "slots": args.slots, "wall_s": wall,
            "models_per_hour": 3600.0 * n / wall if wall > 0 else 0.0,
            "model_s_mean": inside / max(n, 1),
            "overhead_s_per_model": (wall * args.slots - inside) / max(n, 1)}


def _ray_task_cost(tasks: int = 200) -> dict:
    """Seconds per empty Ray task, submitted together and awaited, on a local instance."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    t0 = time.perf_counter()
    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="warning")
    start_s = time.perf_counter() - t0
    try:
        noop = ray.remote(num_cpus=1)(lambda: None)
        ray.get([noop.remote() for _ in range(4)])  # workers started
        t0 = time.perf_counter()
        ray.get([noop.remote() for _ in range(tasks)])
        per_task = (time.perf_counter() - t0) / tasks
    finally:
        ray.shutdown()
    return {"ray_start_s": start_s, "ray_task_ms": per_task * 1000.0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--budgets", default="25%,10%")
    p.add_argument("--triangles", type=int, default=400, help="each model's triangles")
    p.add_argument("--iter", type=int, default=5)
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--slots", type=int, default=len(os.sched_getaffinity(0)),
                   help="concurrent models: pool workers; Ray uses every CPU of this machine")
    p.add_argument("--batch", type=int, default=1, help="training views per step")
    p.add_argument("--texture-res", type=int, default=32)
    p.add_argument("--eval-views", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: the pool runs a worker per GPU (--slots = GPU count)")
    p.add_argument("--chain", action="store_true", help="one LOD chain per model")
    p.add_argument("--executors", default="pool,ray")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.device == "cuda":
        import torch

        args.slots = torch.cuda.device_count()
    results = []
    with tempfile.TemporaryDirectory(prefix="difflod-bench-batch-") as tmp:
        folder = Path(tmp)
        manifest = _manifest(folder, args)
        for kind in args.executors.split(","):
            results.append(_run(kind, manifest, folder / f"out_{kind}", args))
    cost = _ray_task_cost() if "ray" in args.executors else {}
    if args.json:
        json.dump({"settings": vars(args), "results": results, **cost}, sys.stdout, indent=1)
        print()
        return 0
    print(f"{args.models} models x budgets {args.budgets} ({args.triangles} triangles each, "
          f"{args.iter} iterations at {args.res} px, batch {args.batch}, textures "
          f"{args.texture_res}^2, {args.eval_views} eval views), {args.slots} at a time on "
          f"{args.device}")
    print(f"{'executor':<9}{'jobs':>6}{'failed':>8}{'wall s':>9}{'models/h':>10}"
          f"{'s/model':>9}{'overhead s/model':>18}")
    for r in results:
        print(f"{r['executor']:<9}{r['jobs']:>6}{r['failed']:>8}{r['wall_s']:>9.1f}"
              f"{r['models_per_hour']:>10.0f}{r['model_s_mean']:>9.1f}"
              f"{r['overhead_s_per_model']:>18.2f}")
    if cost:
        print(f"ray: start {cost['ray_start_s']:.1f} s; an empty task {cost['ray_task_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
