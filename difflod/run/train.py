"""`difflod train`: a reference, a base mesh with UVs, a config → an optimized model.

The stages, in order:

1. open models — the reference (with the config's mtl_override) and the base
   mesh (difflod.models); with `animate`, the reference's skin is
   transferred onto a base mesh that has none;
2. normalize — both into the reference's unit frame
   (optimize.trainer.prepare_meshes);
3. train — `Trainer.run` (optimize.trainer), resumed from checkpoint.pt on
   request; progress pictures are written here (`fit`);
4. export — mesh/ and mesh.glb in the reference's own frame, history.json,
   the final checkpoint (`export`);
5. evaluate and report — metrics.json and report/ on held-out views
   (run/outputs.evaluate_run → evaluate.report), "initial" against "difflod";
6. finish — checkpoint.pt is deleted unless the config's `keep_checkpoint`
   (`finish`): a finished run needs none, and at 1024² textures it is three
   copies of them (parameters and Adam's two moments), ~113 MB.

The run holds the output folder's lock (run/lock.py) from before its first
write to after its last: a second run into the same folder stops at once.
`resume=True` starts where run/resume.py says: from checkpoint.pt, from
scratch when there is none, or not at all when the folder holds the finished
run. A fresh start deletes a previous run's history.json first, so that the
folder never looks finished with another run's files.

`fit`, `export`, `finish` and `start_point` are the stages and steps
`difflod simplify` shares.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from difflod.config import TrainConfig
from difflod.errors import DiffLodError
from difflod.mesh import Mesh
from difflod.optimize.frame import Frame
from difflod.optimize.trainer import Trainer, prepare_meshes, resolve_device
from difflod.run import outputs
from difflod.run.lock import output_lock
from difflod.run.resume import ResumePoint, final_files, find_resume_point

__all__ = ["TrainResult", "export", "finish", "fit", "start_point", "train"]


@dataclass
class TrainResult:
    """What a finished run produced."""

    mesh: Mesh                      # final candidate, in the reference's original frame
    out_dir: Path
    history: list[dict] = field(default_factory=list)
    metrics: dict | None = None
    seconds: float = 0.0


def fit(trainer: Trainer, frame: Frame, out_dir: Path) -> tuple[Mesh, float]:
    """The train stage: run `trainer` to the end, writing its progress pictures.

    Returns:
        (the final mesh, `final_mesh`; seconds taken).
    """
    t0 = time.perf_counter()
    trainer.run(save_progress=lambda it: outputs.save_progress_image(
        out_dir, it, trainer.render_display()))
    seconds = time.perf_counter() - t0
    return final_mesh(trainer, frame), seconds


def final_mesh(trainer: Trainer, frame: Frame) -> Mesh:
    """The trained mesh as it is written and scored: in the reference's own frame,
    on the CPU, the opaque triangles of a BLEND material under an OPAQUE copy of
    it (base/opaque_split.py: what renderers draw in their opaque pass)."""
    from difflod.base.opaque_split import split_opaque

    return split_opaque(frame.from_unit(trainer.trainable.export_mesh().to("cpu")))


def export(out_dir: Path, trainer: Trainer, final: Mesh) -> None:
    """The export stage: mesh/ + mesh.glb, history.json and the final checkpoint."""
    outputs.write_mesh(out_dir, final)
    outputs.write_history(out_dir, trainer.history)
    trainer.save_checkpoint()


def finish(trainer: Trainer) -> None:
    """The last step of a run: delete checkpoint.pt unless the config keeps it."""
    if not trainer.config.keep_checkpoint:
        trainer.remove_checkpoint()


def start_point(out_dir: Path, config: TrainConfig, *, resume: bool, files: list[Path],
                quiet: bool) -> ResumePoint:
    """Where this run starts (run/resume.py); call it holding the folder's lock.
    A fresh start removes a previous run's history.json (see the module docstring)."""
    point = find_resume_point(out_dir, config, files) if resume else ResumePoint(None)
    if point.checkpoint is None and not point.finished:
        (out_dir / "history.json").unlink(missing_ok=True)
    if resume and not quiet:
        if point.finished:
            print(f"{out_dir} holds the finished run: nothing to resume", file=sys.stderr)
        elif point.checkpoint is None:
            print(f"{out_dir}: no checkpoint to resume from; starting from the first iteration",
                  file=sys.stderr)
    return point


def _finished_result(out_dir: Path, evaluate: bool) -> TrainResult:
    """A finished run's result, read back from its files."""
    from difflod.io import load

    def read(name: str) -> object:
        return json.loads((out_dir / name).read_text(encoding="utf-8"))

    history = read("history.json")
    assert isinstance(history, list)
    metrics = read("metrics.json") if evaluate else None
    assert metrics is None or isinstance(metrics, dict)
    return TrainResult(mesh=load(out_dir / "mesh.glb"), out_dir=out_dir, history=history,
                       metrics=metrics)


def train(config: TrainConfig, *, out_root: Path | str = "out", resume: bool = False,
          quiet: bool = False, evaluate: bool = True, rank: int = 0, world_size: int = 1,
          device: torch.device | None = None) -> TrainResult:
    """Run `difflod train`: the stages of the module docstring, from files to outputs.

    With world_size > 1 (torch.distributed initialized by run.distributed),
    every process trains its share of each batch; only rank 0 writes files.
    """
    from difflod.io.limits import limits_from
    from difflod.models import open_model

    if config.ref_mesh is None or config.base_mesh is None:
        missing = "ref_mesh" if config.ref_mesh is None else "base_mesh"
        raise DiffLodError(f"config: '{missing}' is not set (a model file or asset:NAME)")
    device = device if device is not None else resolve_device(config.device)
    out_dir = config.output_dir(out_root)
    lead = rank == 0
    hint = "put the file there, or set '{}' in the config"
    limits = limits_from(config)
    reference = open_model(config.ref_mesh, mtl_override=config.mtl_override,
                           hint=hint.format("ref_mesh"), limits=limits)
    base = open_model(config.base_mesh, hint=hint.format("base_mesh"), limits=limits)
    if config.animate and reference.skin is not None and base.v_joints is None:
        from difflod.geometry.skin_transfer import transfer_skin

        base = transfer_skin(reference, base)
    ref_n, base_n, frame = prepare_meshes(reference, base, config, device)

    # only rank 0 writes, so only it locks (the other ranks run as its helpers)
    with output_lock(out_dir) if lead else contextlib.nullcontext(out_dir):
        files = final_files(out_dir, evaluate=evaluate)
        point = start_point(out_dir, config, resume=resume, files=files, quiet=quiet) \
            if lead else ResumePoint(None)
        if world_size > 1:  # every rank starts where rank 0, which owns the folder, says
            import torch.distributed as dist

            shared = [point]
            dist.broadcast_object_list(shared, src=0)
            point = shared[0]
        if point.finished:
            return _finished_result(out_dir, evaluate)
        if lead:
            outputs.write_config(out_dir, config)
        trainer = Trainer(config, ref_n, base_n, out_dir, quiet=quiet, rank=rank,
                          world_size=world_size)
        initial = frame.from_unit(trainer.trainable.base_mesh().clone())  # before resuming
        if point.checkpoint is not None:
            trainer.load_checkpoint(point.checkpoint)
        final, seconds = fit(trainer, frame, out_dir)
        if not lead:
            return TrainResult(mesh=final, out_dir=out_dir, history=trainer.history,
                               seconds=seconds)
        export(out_dir, trainer, final)
        metrics = None
        if evaluate:
            metrics = outputs.evaluate_run(out_dir, config, reference,
                                           {"initial": initial.to("cpu"), "difflod": final},
                                           history=trainer.history, seconds=seconds,
                                           quiet=quiet, device=device)
        finish(trainer)
    return TrainResult(mesh=final, out_dir=out_dir, history=trainer.history, metrics=metrics,
                       seconds=seconds)
