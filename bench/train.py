"""Benchmark of one training iteration: ms per iteration and peak memory.

Settings default to nvdiffmodeling's spot.json (train_res 512, batch 8,
1024^2 textures, random textures, learning rate 0.03) on a procedural
reference (difflod.assets "spiky") and a 3072-triangle sphere base mesh, on
each requested device. Warm-up iterations (numba/CUDA compilation, caches)
are excluded; the table reports mean and median over the timed iterations.

    python bench/train.py [--device cpu,cuda] [--iters 10] [--warmup 3]
                          [--res 512] [--batch 8] [--texture-res 1024]
                          [--ref-triangles 50000] [--base-triangles 3072] [--json]
                          [--profile N] [--compile auto|on|off]
                          [--cuda-graph off,auto] [--reference-spp auto,1]
                          [--scaling] [--animated]

--profile N prints, after the table, torch.profiler's N most expensive
operators of 10 extra iterations per device (self CPU time; on a GPU also
self CUDA time, and per iteration: host time to queue, device busy time,
device activities). "mean"/"median" read each step back at once; "in loop"
is the mean of the same number of steps run as the training loop runs them
(numbers read back every log_interval steps), "loop median" the median step
of that loop (on a GPU the time between CUDA events recorded after each
step: no host sync; on the CPU the loop's mean), "host" the mean time its
`advance` calls took to queue a step.

--cuda-graph takes a comma list of the config key's values (each a row, in
one process, so their speeds compare as a ratio); "graphed" says whether the
step was recorded. --reference-spp likewise takes a comma list of the config key's values
(auto = null: the reference drawn at the candidate's `spp`; 2 = 4 samples a
pixel), a row each. --scaling runs, instead of the one setting, the grid
train_res 256/512/1024/2048 x batch 1/8/16 (50k-triangle reference), then
reference triangles 20k/200k/2M at 512^2, batch 8; a setting that runs out
of memory is a row saying so.

"peak GiB" on a GPU is the most memory torch allocated from the trainer's
first step to its last, warm-up included: a recorded step allocates nothing
while it replays (its working set sits in the recording's pool, allocated
while it was recorded), so a peak counted from after a warm-up that
recorded the step showed only the live tensors (0.61 GiB at 512^2 x 8 on an
H100, against 1.1 GiB counted over the recording). --animated trains the skinned_cylinder asset
(reference and base at the triangle counts given) in poses of its animation,
each view at its own time (one render of the posed copies a step).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from difflod.config import load_config
from difflod.errors import DiffLodError
from difflod.models import open_model
from difflod.optimize.trainer import Trainer, prepare_meshes


def bench_device(device: str, args: argparse.Namespace, tmp: Path, graph: str = "auto",
                 ref_spp: int | None = None) -> dict:
    ref_mesh = f"asset:spiky?triangles={args.ref_triangles}&texture_res=1024"
    base_mesh = f"asset:sphere?triangles={args.base_triangles}"
    if args.animated:  # each view at its own pose of the animation
        ref_mesh = f"asset:skinned_cylinder?triangles={args.ref_triangles}&texture_res=1024"
        base_mesh = f"asset:skinned_cylinder?triangles={args.base_triangles}&texture_res=64"
    cfg = load_config(None, {
        "ref_mesh": ref_mesh, "base_mesh": base_mesh, "animate": args.animated,
        "random_textures": True, "iter": args.warmup + args.iters, "batch": args.batch,
        "train_res": args.res, "texture_res": [args.texture_res, args.texture_res],
        "learning_rate": 0.03, "min_roughness": 0.25, "save_interval": 0,
        "device": device, "out_dir": f"bench_{device}", "compile": args.compile,
        "cuda_graph": graph, "reference_spp": ref_spp,
        # the background of the earlier rows (and of the trees they compare with)
        "train_background": "random"})
    dev = torch.device(device)
    if dev.type == "cuda":  # an earlier row's trainer (and its graph's pool) must not count
        gc.collect()
        torch.cuda.empty_cache()
    ref, base = open_model(cfg.ref_mesh), open_model(cfg.base_mesh)
    ref_n, base_n, _ = prepare_meshes(ref, base, cfg, dev)
    trainer = Trainer(cfg, ref_n, base_n, tmp / cfg.run_name, quiet=True)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":  # the peak of the whole run: warm-up and recording included
        torch.cuda.reset_peak_memory_stats()
    t_warm = time.perf_counter()
    for _ in range(args.warmup):
        trainer.step()
    sync()
    warmup_s = time.perf_counter() - t_warm
    times = []
    for _ in range(args.iters):  # each step read back at once: a median per step
        t0 = time.perf_counter()
        trainer.step()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    # as the training loop runs: no read-back inside log_interval steps; on a GPU
    # an event after each step gives each step's time without a host sync
    marks = []
    queued = 0.0
    t0 = time.perf_counter()
    for i in range(args.iters):
        q0 = time.perf_counter()
        trainer.advance()
        queued += time.perf_counter() - q0
        if dev.type == "cuda":
            marks.append(torch.cuda.Event(enable_timing=True))
            marks[-1].record()
        if (i + 1) % trainer.config.log_interval == 0:
            trainer.flush()
    trainer.flush()
    sync()
    pipelined = (time.perf_counter() - t0) * 1000.0 / args.iters
    loop_median = statistics.median(a.elapsed_time(b) for a, b in itertools.pairwise(marks)) \
        if len(marks) > 1 else pipelined
    if args.profile:
        _profile_steps(trainer, dev, args.profile)
    total = args.batch * args.res ** 2
    peak = (torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"device": device, "name": torch.cuda.get_device_name() if dev.type == "cuda"
            else "cpu", "ms_mean": statistics.fmean(times), "ms_median": statistics.median(times),
            "ms_pipelined": pipelined, "ms_loop_median": loop_median,
            "ms_host_queue": queued * 1000.0 / args.iters, "warmup_s": warmup_s,
            "compiled": trainer.compiled,
            "graphed": trainer.captured is not None and trainer.captured.graph is not None,
            "peak_gib": peak, "peak_kind": "GPU allocated" if dev.type == "cuda" else "process RSS",
            "res": args.res, "batch": args.batch, "texture_res": args.texture_res,
            "animated": trainer.skinned,
            "reference_spp": trainer.config.reference_spp,
            "ref_triangles": ref.num_triangles, "base_triangles": base.num_triangles,
            "psnr_last": trainer.history[-1]["psnr"],
            # the recorded step's pixel slots per layer, as a share of the pixels
            "slots": (trainer.pixel_capacity or total) / total,
            "skipped": sum(1 for r in trainer.history if r.get("skipped"))}


def _failed_row(device: str, args: argparse.Namespace, graph: str, error: str) -> dict:
    return {"device": device, "res": args.res, "batch": args.batch,
            "ref_triangles": args.ref_triangles, "cuda_graph": graph, "error": error}


PROFILED_STEPS = 10


def _profile_steps(trainer: Trainer, dev: torch.device, rows: int) -> None:
    """Print the `rows` most expensive operators of PROFILED_STEPS iterations run as
    the loop runs them, and per step: host time, summed kernel time, launches."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    with profile(activities=acts, record_shapes=True) as prof:
        t0 = time.perf_counter()
        for _ in range(PROFILED_STEPS):
            trainer.advance()
        host = time.perf_counter() - t0
        trainer.flush()
        sync()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    keys = ["self_cuda_time_total"] if dev.type == "cuda" else []
    for key in [*keys, "self_cpu_time_total"]:  # on a GPU the host side can be the limit
        print(f"# {PROFILED_STEPS} iterations on {dev}, by {key}", file=sys.stderr)
        print(events.table(sort_by=key, row_limit=rows), file=sys.stderr)
    if dev.type == "cuda":  # the heaviest operators by input shape (which call is it?)
        print(f"# {PROFILED_STEPS} iterations on {dev}, by operator and input shapes",
              file=sys.stderr)
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cuda_time_total", row_limit=min(rows, 25)), file=sys.stderr)
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time for e in kernels) / 1000.0 / PROFILED_STEPS
        print(f"# per iteration (profiled): wall {wall * 1000 / PROFILED_STEPS:.2f} ms, host "
              f"{host * 1000 / PROFILED_STEPS:.2f} ms to queue, device busy {busy:.2f} ms, "
              f"{len(kernels) / PROFILED_STEPS:.0f} device activities", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--res", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--texture-res", type=int, default=1024)
    p.add_argument("--ref-triangles", type=int, default=50000)
    p.add_argument("--base-triangles", type=int, default=3072)
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="the config key: shading through torch.compile (auto: on a GPU)")
    p.add_argument("--cuda-graph", default="auto",
                   help="comma list of the config key's values (auto, on, off), a row each")
    p.add_argument("--reference-spp", default="auto",
                   help="comma list of the config key's values (auto = null, or 1..64), a row each")
    p.add_argument("--scaling", action="store_true",
                   help="the resolution x batch grid and the reference-size row")
    p.add_argument("--animated", action="store_true",
                   help="the skinned_cylinder asset as reference and base, each view posed "
                        "at its own time of the animation")
    p.add_argument("--json", action="store_true")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print the N most expensive operators of one iteration")
    args = p.parse_args()
    import tempfile

    graphs = [g.strip() for g in args.cuda_graph.split(",") if g.strip()]
    try:
        ref_spps = [None if v.strip() == "auto" else int(v) for v in args.reference_spp.split(",")
                    if v.strip()]
    except ValueError:
        p.error(f"--reference-spp: a comma list of auto or integers, got {args.reference_spp!r}")
    settings = [{}]
    if args.scaling:
        settings = [{"res": r, "batch": b} for r in (256, 512, 1024, 2048) for b in (1, 8, 16)]
        settings += [{"ref_triangles": n} for n in (20_000, 200_000, 2_000_000)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in [d.strip() for d in args.device.split(",") if d.strip()]:
            for setting in settings:
                for graph in graphs:
                    for ref_spp in ref_spps:
                        run = argparse.Namespace(**{**vars(args), **setting})
                        try:
                            rows.append(bench_device(device, run, Path(tmp), graph, ref_spp))
                        except DiffLodError as e:  # out of memory: a row saying so
                            rows.append(_failed_row(device, run, graph, str(e)))
                        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'device':8} {'name':28} {'ms/iter mean':>12} {'median':>8} {'in loop':>8} "
          f"{'loop median':>11} {'host':>6} {'peak GiB':>9}  note")
    for r in rows:
        if "error" in r:
            print(f"{r['device']:8} res {r['res']}, batch {r['batch']}, ref "
                  f"{r['ref_triangles']} tris, cuda_graph {r['cuda_graph']}: {r['error']}")
            continue
        print(f"{r['device']:8} {r['name'][:28]:28} {r['ms_mean']:12.1f} {r['ms_median']:8.1f} "
              f"{r['ms_pipelined']:8.1f} {r['ms_loop_median']:11.1f} {r['ms_host_queue']:6.1f} "
              f"{r['peak_gib']:9.2f}  {r['peak_kind']}; res {r['res']}, batch {r['batch']}, "
              f"tex {r['texture_res']}^2, ref {r['ref_triangles']} / base "
              f"{r['base_triangles']} tris{', animated' if r['animated'] else ''}, reference spp {r['reference_spp']}; "
              f"compiled shading {r['compiled']}, graphed "
              f"{r['graphed']} (slots {r['slots']:.0%}, {r['skipped']} skipped), warm-up "
              f"{r['warmup_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
