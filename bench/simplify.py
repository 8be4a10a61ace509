"""Benchmark of `difflod simplify` end to end: wall time per stage.

Two settings:

- `--setting demo` (default): `difflod demo`'s run (run/demo.py: the spiky
  asset at 30k triangles to 400, DEMO_SETTINGS), sized for a laptop CPU;
- `--setting h200`: the GPU issue's run, a 50k-triangle reference to 1%
  (500 triangles), 2,000 iterations with simplify's defaults (512 px, batch
  8, 1024^2 textures), 64 evaluation views at 512^2 and the report.

Rows: the stages (base mesh, train, evaluate, report, from the run's
metrics.json "timings"), training's ms per iteration after the warm-up step
(from history.json), and the whole call. `--iter N` shortens training;
`--base-parts` also times the base mesh's pieces alone on the setting's
reference (QEM decimation, xatlas atlas, texture bake, renderer tangents).

    python bench/simplify.py [--setting demo|h200] [--iter N] [--device cpu] [--set KEY=JSON]
                             [--base-parts] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "h200": {"reference": "asset:knot?triangles=50000&texture_res=1024", "fraction": 0.01,
             "overrides": {"iter": 2000, "eval_views": 64, "eval_res": 512,
                           "save_interval": 0}},
}


def setting(name: str) -> tuple[str, int | None, dict[str, Any]]:
    """(reference spec, triangle budget or None for a fraction, config overrides)."""
    if name == "demo":
        from difflod.run.demo import DEMO_REFERENCE, DEMO_SETTINGS, DEMO_TRIANGLES

        return DEMO_REFERENCE, DEMO_TRIANGLES, dict(DEMO_SETTINGS)
    s = SETTINGS[name]
    return s["reference"], None, dict(s["overrides"])


def base_parts(reference: Any, budget: int, texture_res: int) -> list[dict]:
    from difflod.base.atlas import uv_atlas
    from difflod.base.bake import bake_textures
    from difflod.base.baseline import baseline, decimate
    from difflod.base.render_tangents import match_render_tangents

    rows = []

    def timed(name: str, fn: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        rows.append({"part": name, "wall_s": time.perf_counter() - w,
                     "cpu_s": time.process_time() - c})
        return out

    pos, idx = timed("base: QEM decimation", lambda: decimate(
        reference.v_pos.numpy(), reference.t_pos_idx.numpy(), budget))
    uv, uv_idx = timed("base: xatlas atlas", lambda: uv_atlas(pos, idx, texture_res))
    timed("base: texture bake", lambda: bake_textures(reference, pos, idx, uv, uv_idx,
                                                      texture_res))
    base = timed("base: baseline (all three)", lambda: baseline(reference, budget,
                                                                texture_res=texture_res))
    timed("base: renderer tangents", lambda: match_render_tangents(base))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=["demo", *SETTINGS], default="demo")
    p.add_argument("--iter", type=int, default=None, help="training iterations")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cuda-graph", choices=["auto", "on", "off"], default="auto",
                   help="the config key: the training step recorded as a CUDA graph")
    p.add_argument("--base-parts", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a config key (e.g. --set position_smoothing=10)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    import torch

    from difflod.models import open_model
    from difflod.run.simplify import simplify, simplify_config

    spec, budget, overrides = setting(args.setting)
    overrides["device"] = args.device
    overrides["cuda_graph"] = args.cuda_graph
    if args.iter is not None:
        overrides["iter"] = args.iter
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    reference = open_model(spec)
    if budget is None:
        budget = int(SETTINGS[args.setting]["fraction"] * reference.num_triangles)
    config = simplify_config(None, overrides)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        w, c = time.perf_counter(), time.process_time()
        simplify(spec, budget, out, config=config, quiet=True)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        metrics = json.loads((out / "metrics.json").read_text())
        history = json.loads((out / "history.json").read_text())
    for key, secs in (metrics.get("timings") or {}).items():
        rows.append({"part": f"stage {key.removesuffix('_s').replace('_', ' ')}",
                     "wall_s": secs, "cpu_s": None})
    rows.append({"part": "difflod simplify (whole call)", "wall_s": wall, "cpu_s": cpu})
    steady = [h["ms"] for h in history[1:]] or [history[0]["ms"]]
    if args.base_parts:
        rows += base_parts(reference, budget, max(config.texture_res))
    info = {"setting": args.setting, "reference": spec,
            "reference_triangles": reference.num_triangles, "triangles": budget,
            "iter": config.iter, "train_res": config.train_res, "batch": config.batch,
            "eval_views": config.eval_views, "eval_res": config.eval_res,
            "device": args.device, "cuda_graph": args.cuda_graph, "set": args.set,
            "cpu_threads": torch.get_num_threads(),
            "first_step_ms": history[0]["ms"], "train_ms_per_it": statistics.fmean(steady),
            "psnr_difflod": metrics["candidates"]["difflod"]["psnr"]["mean"], "rows": rows}
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
        return 0
    print(f"difflod simplify, setting {args.setting}: {spec} ({reference.num_triangles} tris) "
          f"-> {budget}, {config.iter} it at {config.train_res}px x{config.batch}, "
          f"eval {config.eval_views} views at {config.eval_res}^2, device {args.device}")
    print(f"{'part':34} {'wall s':>8} {'cpu s':>8}")
    for r in rows:
        cpu_s = "-" if r["cpu_s"] is None else f"{r['cpu_s']:.1f}"
        print(f"{r['part']:34} {r['wall_s']:8.1f} {cpu_s:>8}")
    print(f"train: first step {info['first_step_ms']:.0f} ms, then "
          f"{info['train_ms_per_it']:.1f} ms/it; held-out PSNR {info['psnr_difflod']:.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
