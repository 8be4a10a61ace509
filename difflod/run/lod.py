"""LOD chains: `difflod simplify REF --triangles 20000,5000,1000`, every level in one run.

Each level is what `difflod simplify` makes of the reference at that budget:
its own QEM + bake base (decimated from the reference, not from the level
above: QEM of QEM loses the reference's quadrics), optimized for its
appearance. What the levels share, and why a chain takes less time than
separate runs:

- the reference is read, normalized and its edge topology built once;
- the levels train in lockstep with the same seed, so at every iteration
  they draw the same random views: the reference is rendered once per
  step for all of them (optimize.reference_renders.ReferenceRenders),
  but where the steps are recorded as CUDA graphs (optimize.graphed:
  each recording renders its own reference);
- one held-out evaluation renders the reference's views once for every
  level, and writes one report.

OUT_DIR gets:
- lod0/, lod1/, ... — each level as `difflod simplify` writes one
  (config.json, history.json, img_NNNNNN.png, mesh/, mesh.glb,
  qem_bake.glb; checkpoint.pt only with keep_checkpoint), without a
  metrics.json of its own;
- lods.glb — the chain in one glTF (MSFT_lod), finest first, with screen
  coverage hints (`screen_coverage`);
- metrics.json and report/ — every level's qem_bake and difflod candidates
  (named `qem_bake_lod0`, `difflod_lod0`, ...) against the reference, plus
  "levels": triangles and training seconds per level.

The output folder is locked for the run (run/lock.py) and the stages are
announced and timed as simplify's (run/stages.py). Every level's
checkpoint.pt stays until the chain's last file (metrics.json, report/) is
written, so `--resume` (`resume=True`) finds each level as `difflod simplify
--resume` finds its folder (run/resume.py): a level with a checkpoint goes on
from it, one without starts from the first iteration, and a folder whose
levels, lods.glb and evaluation are all there is the finished chain (nothing
is redone). Levels resumed from different iterations still train side by
side; they share a reference render only on the steps whose views agree.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from difflod.config import TrainConfig
from difflod.errors import DiffLodError
from difflod.mesh import Mesh
from difflod.run.simplify import (
    BASELINE_NAME,
    SimplifyResult,
    base_mesh,
    check_budget,
    open_reference,
)

__all__ = ["CHAIN_FILE", "ChainResult", "check_budgets", "screen_coverage", "simplify_chain"]

CHAIN_FILE = "lods.glb"


@dataclass
class ChainResult:
    """What `simplify_chain` produced.

    Attributes:
        levels: one SimplifyResult per level, finest first (their `metrics` are
            None: the chain's evaluation covers them all).
        out_dir: the folder holding every output.
        coverage: the screen coverage written for each level.
        metrics: the held-out evaluation of every level, or None.
        seconds: training time of the whole chain (the levels train together).
    """

    levels: list[SimplifyResult]
    out_dir: Path
    coverage: list[float] = field(default_factory=list)
    metrics: dict | None = None
    seconds: float = 0.0


def check_budgets(budgets: Sequence[object], reference: Mesh, name: str) -> list[int]:
    """Each budget checked as `difflod simplify` checks one, finest first, no repeats."""
    if len(budgets) < 2:
        raise DiffLodError(f"an LOD chain needs at least 2 budgets, got {list(budgets)}")
    checked = [check_budget(b, reference, name) for b in budgets]
    if len(set(checked)) != len(checked):
        raise DiffLodError(f"triangle budgets repeat a level: {checked}")
    return sorted(checked, reverse=True)


def screen_coverage(triangles: Sequence[int]) -> list[float]:
    """MSFT_screencoverage hints for levels with these triangle counts (finest first).

    Level i is shown down to the screen coverage (share of the screen's area)
    at which level i + 1 has as many triangles per covered pixel as level 0 has
    at full screen: triangles[i + 1] / triangles[0]; the coarsest level is never
    culled (0).
    """
    counts = [max(int(t), 1) for t in triangles]
    return [counts[i + 1] / counts[0] for i in range(len(counts) - 1)] + [0.0]


def simplify_chain(reference: str | Path | Mesh, budgets: Sequence[int], out_dir: str | Path, *,
                   config: TrainConfig | None = None, quiet: bool = False,
                   evaluate: bool = True, device: torch.device | None = None,
                   resume: bool = False) -> ChainResult:
    """Make one model per budget that looks like `reference`; write OUT_DIR.

    Args:
        reference: a model file, an `asset:NAME?...` spec, or a Mesh.
        budgets: two or more triangle budgets, each as `simplify` takes one
            (any order: levels are made finest first).
        out_dir: the folder for the outputs (see the module docstring).
        config: run settings shared by every level (default `simplify_config()`).
        quiet: no progress output.
        evaluate: write metrics.json and report/ (held-out views).
        device: torch device (default: config.device).
        resume: continue the chain in `out_dir` (see the module docstring).
    Raises:
        DiffLodError: a missing or bad model, a budget out of range or repeated,
            a bad config, a level's checkpoint that does not fit.
    """
    from difflod.optimize.trainer import resolve_device
    from difflod.run.lock import output_lock
    from difflod.run.resume import final_files
    from difflod.run.stages import StageLog
    from difflod.run.train import finish, start_point

    ref_mesh, name, config = open_reference(reference, config)
    levels = check_budgets(budgets, ref_mesh, name)
    out = Path(out_dir)
    device = device if device is not None else resolve_device(config.device)
    with output_lock(out):
        points = [start_point(out / f"lod{i}", _level_config(config, out, i), resume=resume,
                              files=final_files(out / f"lod{i}", evaluate=False,
                                                extra=[f"{BASELINE_NAME}.glb"]), quiet=True)
                  for i in range(len(levels))]
        chain_files = [out / CHAIN_FILE] + ([out / "metrics.json", out / "report/report.html"]
                                            if evaluate else [])
        if all(p.finished for p in points) and all(f.is_file() for f in chain_files):
            if not quiet:
                print(f"{out} holds the finished chain: nothing to resume", file=sys.stderr)
            return _finished_chain(out, len(levels), evaluate)
        stages = StageLog(["base mesh", "train", "evaluate", "report"] if evaluate
                          else ["base mesh", "train"], quiet=quiet)
        results, coverage, seconds, shared, history, trainers = _train_chain(
            ref_mesh, levels, out, config, device, stages, quiet,
            [p.checkpoint for p in points])
        metrics = None
        if evaluate:
            candidates: dict[str, Mesh] = {}
            files: dict[str, Path] = {}
            for i, r in enumerate(results):
                candidates[f"{BASELINE_NAME}_lod{i}"] = r.baseline
                candidates[f"difflod_lod{i}"] = r.mesh
                files[f"{BASELINE_NAME}_lod{i}"] = r.out_dir / f"{BASELINE_NAME}.glb"
                files[f"difflod_lod{i}"] = r.out_dir / "mesh.glb"
            extra = {"train_seconds": seconds,
                     "levels": [{"budget": b, "triangles": r.mesh.num_triangles,
                                 "screen_coverage": c, "start": r.start}
                                for b, r, c in zip(levels, results, coverage)],
                     "reference_renders": {"rendered": shared.renders,
                                           "reused": shared.reuses},
                     "timings": stages.timings()}
            from difflod.evaluate.report import evaluate_into

            metrics = evaluate_into(
                out, ref_mesh, candidates, views=config.eval_views, res=config.eval_res,
                seed=config.seed, backend=config.render_backend,
                files=files, extra=extra, history=history, config=config.to_dict(),
                quiet=quiet, on_stage=stages.begin, device=device)
        for trainer in trainers:  # the checkpoints go last (see the module docstring)
            finish(trainer)
        stages.finish()
    return ChainResult(levels=results, out_dir=out, coverage=coverage, metrics=metrics,
                       seconds=seconds)


def _level_config(config: TrainConfig, out: Path, i: int) -> TrainConfig:
    return config.replace(out_dir=str(out / f"lod{i}"))


def _finished_chain(out: Path, n_levels: int, evaluate: bool) -> ChainResult:
    """A finished chain's result, read back from its files."""
    from difflod.io import load

    levels = []
    for i in range(n_levels):
        level_dir = out / f"lod{i}"
        history = json.loads((level_dir / "history.json").read_text(encoding="utf-8"))
        levels.append(SimplifyResult(mesh=load(level_dir / "mesh.glb"),
                                     baseline=load(level_dir / f"{BASELINE_NAME}.glb"),
                                     out_dir=level_dir, history=history))
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8")) \
        if evaluate else None
    coverage = screen_coverage([r.mesh.num_triangles for r in levels])
    return ChainResult(levels=levels, out_dir=out, coverage=coverage, metrics=metrics)


def _train_chain(ref_mesh: Mesh, levels: list[int], out: Path, config: TrainConfig,
                 device: torch.device, stages, quiet: bool,
                 checkpoints: list[Path | None]):
    """The base-mesh, train and export stages of every level (see the module docstring);
    a level with a checkpoint goes on from it.

    Returns (level results, screen coverage, training seconds, the shared reference
    renders, the finest level's history, the trainers)."""
    from difflod.io import save
    from difflod.io.gltf_write import write_lods
    from difflod.optimize.progress import Progress
    from difflod.optimize.reference_renders import ReferenceRenders
    from difflod.optimize.trainer import Trainer, prepare_meshes
    from difflod.render.backends import warm_up
    from difflod.render.materials import mip_stacks
    from difflod.run import outputs
    from difflod.run.train import export, final_mesh

    stages.begin("base mesh")
    # base meshes; the reference is normalized once
    bases = [base_mesh(ref_mesh, budget, config) for budget in levels]
    ref_n, _, frame = prepare_meshes(ref_mesh, bases[0][1], config, device)
    shared = ReferenceRenders(capacity=max(1, config.batch))
    # a first run's CPU kernels compiled ahead, in parallel, before the pyramids call theirs
    warm_up(config.render_backend, device, train=True)
    pyramids = mip_stacks(ref_n)  # the reference's mip pyramids, one copy for every level
    trainers, level_dirs = [], []
    for i, (base, train_base, _) in enumerate(bases):
        level_dir = out / f"lod{i}"
        level_config = _level_config(config, out, i)
        level_dir.mkdir(parents=True, exist_ok=True)
        outputs.write_config(level_dir, level_config)
        save(base, level_dir / f"{BASELINE_NAME}.glb")
        trainer = Trainer(level_config, ref_n, frame.to_unit(train_base).to(device),
                          level_dir, quiet=True, reference_renders=shared,
                          reference_mips=pyramids)
        if checkpoints[i] is not None:
            trainer.load_checkpoint(checkpoints[i])
        trainers.append(trainer)
        level_dirs.append(level_dir)

    # train the levels in lockstep: each step's reference render serves all of them
    stages.begin("train")

    def progress_saver(trainer: Trainer, level_dir: Path):
        return lambda it: outputs.save_progress_image(level_dir, it, trainer.render_display())

    loops = [t.iterate(save_progress=progress_saver(t, d)) for t, d in zip(trainers, level_dirs)]
    progress = Progress(total=config.iter, quiet=quiet, log_every=config.log_interval)
    t0 = time.perf_counter()
    progress.start(min(t.iteration for t in trainers))
    while loops:
        records = []
        for loop in list(loops):
            record = next(loop, None)
            if record is None:
                loops.remove(loop)
            else:
                records.append(record)
        if records:
            progress.update(records[-1])  # the coarsest level still training
    progress.close()
    seconds = time.perf_counter() - t0

    # export (each level's final checkpoint too: it goes when the chain's files are done)
    results = []
    for (base, _, start), trainer, level_dir in zip(bases, trainers, level_dirs):
        final = final_mesh(trainer, frame)
        export(level_dir, trainer, final)
        results.append(SimplifyResult(mesh=final, baseline=base.to("cpu"), out_dir=level_dir,
                                      history=trainer.history, seconds=seconds, start=start))
    coverage = screen_coverage([r.mesh.num_triangles for r in results])
    write_lods([r.mesh for r in results], out / CHAIN_FILE, coverage)
    return results, coverage, seconds, shared, trainers[0].history, trainers
