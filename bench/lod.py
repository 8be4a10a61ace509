"""Benchmark of an LOD chain: one `simplify_chain` run against separate `simplify`
runs of the same levels (the issue's goal: the chain in less wall time).

Both paths start from a warm process (numba kernels compiled by a short
warm-up run). Each repeat runs the chain and the separate runs one after the
other, alternating which goes first, so load on a shared machine falls on
both; the table gives wall time and CPU time (all threads of this process),
and the chain / separate ratio of each, measured in the same repeat. The
held-out PSNR of each level's result is listed to show the chain gives the
same models (on the CPU the levels of a chain are bit-identical to separate
runs; on a GPU, whose sums run in no fixed order, close to them). Under
each row a line gives the wall seconds of each stage (base mesh, train,
evaluate, report): the separate runs' summed over the levels, and the
chain's.

    python bench/lod.py [--reference asset:knot?triangles=20000] [--levels 2000,500,100]
                        [--iter 100] [--train-res 128] [--batch 4] [--texture-res 256]
                        [--eval-views 16] [--eval-res 256] [--device cpu] [--repeats 1]
                        [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from difflod.models import open_model
from difflod.run.lod import simplify_chain
from difflod.run.simplify import simplify, simplify_config


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


STAGES = ("base_mesh_s", "train_s", "evaluate_s", "report_s")


def _print_row(r: dict) -> None:
    print(f"| {r['repeat']} | {sum(r['separate_wall_s']):.1f} "
          f"({', '.join(f'{x:.1f}' for x in r['separate_wall_s'])}) | "
          f"{r['chain_wall_s']:.1f} | {r['wall_ratio']:.2f} | "
          f"{sum(r['separate_cpu_s']):.1f} | {r['chain_cpu_s']:.1f} | {r['cpu_ratio']:.2f} | "
          f"{', '.join(f'{x:.2f}' for x in r['separate_psnr'])} | "
          f"{', '.join(f'{x:.2f}' for x in r['chain_psnr'])} |", flush=True)
    print("  stages s, separate (summed) / chain: " + ", ".join(
        f"{k[:-2].replace('_', ' ')} {r['separate_stages_s'][k]:.1f} / {r['chain_stages_s'][k]:.1f}"
        for k in STAGES), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default="asset:knot?triangles=20000&texture_res=512")
    p.add_argument("--levels", default="2000,500,100")
    p.add_argument("--iter", type=int, default=100)
    p.add_argument("--train-res", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--texture-res", type=int, default=256)
    p.add_argument("--eval-views", type=int, default=16)
    p.add_argument("--eval-res", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    config = simplify_config(None, {
        "iter": args.iter, "train_res": args.train_res, "batch": args.batch,
        "texture_res": [args.texture_res] * 2, "eval_views": args.eval_views,
        "eval_res": args.eval_res, "device": args.device, "save_interval": 0})
    ref = open_model(args.reference)
    rows = []
    if not args.json:
        print(f"reference {args.reference}, levels {levels}, {args.iter} it at "
              f"{args.train_res}^2, batch {args.batch}, {args.eval_views} eval views at "
              f"{args.eval_res}^2, {args.device}")
        print("| repeat | separate wall s (per level) | chain wall s | wall ratio | "
              "separate CPU s | chain CPU s | CPU ratio | PSNR separate | PSNR chain |")
        print("|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        simplify(ref, levels[-1], tmp / "warm", config=config.replace(iter=2, eval_views=1),
                 quiet=True)

        def separate() -> list[tuple[float, float, float]]:
            out = []
            for n in levels:
                r, wall, cpu = _timed(lambda n=n: simplify(ref, n, tmp / f"sep{n}", config=config,
                                                           quiet=True))
                out.append((wall, cpu, r.metrics["candidates"]["difflod"]["psnr"]["mean"],
                            r.timings))
            return out

        def chain():
            return simplify_chain(ref, levels, tmp / "chain", config=config, quiet=True)

        for rep in range(args.repeats):
            if rep % 2 == 0:
                sep = separate()
                c, c_wall, c_cpu = _timed(chain)
            else:
                c, c_wall, c_cpu = _timed(chain)
                sep = separate()
            s_wall, s_cpu = sum(s[0] for s in sep), sum(s[1] for s in sep)
            cands = c.metrics["candidates"]
            rows.append({
                "repeat": rep, "levels": levels,
                "separate_wall_s": [round(s[0], 2) for s in sep],
                "separate_cpu_s": [round(s[1], 2) for s in sep],
                "separate_psnr": [round(s[2], 3) for s in sep],
                "chain_wall_s": round(c_wall, 2), "chain_cpu_s": round(c_cpu, 2),
                "chain_psnr": [round(cands[f"difflod_lod{i}"]["psnr"]["mean"], 3)
                               for i in range(len(levels))],
                "wall_ratio": round(c_wall / s_wall, 3), "cpu_ratio": round(c_cpu / s_cpu, 3),
                "reference_renders": c.metrics["reference_renders"],
                # wall seconds per stage: the separate runs' summed over the levels
                "separate_stages_s": {k: round(sum(x[3].get(k, 0.0) for x in sep), 2)
                                      for k in STAGES},
                "chain_stages_s": {k: round(c.metrics["timings"].get(k, 0.0), 2)
                                   for k in STAGES}})
            if not args.json:
                _print_row(rows[-1])
    if args.json:
        json.dump({"settings": vars(args), "rows": rows}, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
