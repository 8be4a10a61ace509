"""`difflod eval`: compare candidate models with a reference on held-out views.

The stages, in order: open models (files or asset specs, difflod.models) →
evaluate and report (evaluate.report.evaluate_into: the table on the
terminal, and with an output folder metrics.json and report/).

The models are opened on the CPU and moved to the evaluation's device
(`--device auto|cpu|cuda|cuda:N`; auto = the GPU when torch sees one), where
they are rendered and scored. The device and the backend are checked
together before any model is opened: a backend that cannot render on the
device ("cuda" with the CPU, "cpu" with a GPU) is one BackendError line.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import torch

from difflod.errors import BackendError, DiffLodError
from difflod.io.limits import ReadLimits

__all__ = ["candidate_names", "eval_device", "evaluate_models"]

#: which device type each named backend renders on ("torch" renders on any)
_BACKEND_DEVICE = {"cpu": "cpu", "cuda": "cuda"}


def eval_device(device: str | None, backend: str | None) -> torch.device:
    """The device `--device` names, checked against what torch sees and `backend`.

    Args:
        device: "auto" (or None): the backend's device where `backend` names
            one ("cpu", "cuda"), else the GPU when torch sees one, else the
            CPU; or "cpu", "cuda", "cuda:N".
        backend: the render backend's name, None or "auto" for the device's own.
    Raises:
        BackendError: a malformed name, a GPU torch does not see, or a backend
            that cannot render on the device.
    """
    name = "auto" if device is None else str(device).strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise BackendError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    wanted = _BACKEND_DEVICE.get((backend or "auto").strip().lower())
    if name == "auto":
        name = wanted or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BackendError(f"--device {name}: torch sees no CUDA GPU here; use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise BackendError(f"--device {name}: torch sees {count} GPU(s), cuda:0 to "
                               f"cuda:{count - 1}")
    if wanted is not None and wanted != dev.type:
        other = "cuda" if wanted == "cpu" else "cpu"
        raise BackendError(f"--backend {backend} renders on the {'GPU' if wanted == 'cuda' else 'CPU'}"
                           f", but --device is {name}: use --device {wanted} (or auto), or "
                           f"--backend {other} or torch")
    return dev


def candidate_names(specs: list[str]) -> list[str]:
    """Short unique names for the table: file names, or whole paths where they clash."""
    short = [c if c.startswith("asset:") else Path(c).name for c in specs]
    return [s if short.count(s) == 1 else c for s, c in zip(short, specs)]


def evaluate_models(reference: str, candidates: list[str], *, out: str | Path | None = None,
                    views: int = 64, res: int = 512, seed: int = 0,
                    backend: str | None = None, renderer: str = "difflod",
                    limits: ReadLimits | None = None, device: str | None = None
                    ) -> dict[str, Any]:
    """Run `difflod eval` on model specs; return the results dict of evaluate.evaluate.

    Args:
        reference, candidates: model files or `asset:NAME?...` specs.
        out: folder for metrics.json and report/, or None (table only).
        views, res, seed: held-out views, their square size, their seed.
        backend: render backend; None or "auto" for the default.
        renderer: "difflod", or "threejs" (the files as three.js shows them).
        limits: what the model files may declare (default `ReadLimits()`).
        device: "auto" (None), "cpu", "cuda" or "cuda:N": where the models are
            rendered and scored (see `eval_device`).
    Raises:
        DiffLodError: views < 1 or res < 8, a device or backend that cannot be
            used (BackendError), or a model that cannot be opened;
            OutputInUseError: another difflod process writes into `out`.
    """
    from difflod.evaluate.report import evaluate_into
    from difflod.models import open_model
    from difflod.optimize.progress import compile_notice
    from difflod.run.lock import output_lock

    if views < 1 or res < 8:
        raise DiffLodError("--views must be >= 1 and --res >= 8")
    dev = eval_device(device, backend)
    ref_mesh = open_model(reference, limits=limits)
    names = candidate_names(candidates)
    meshes = {name: open_model(c, limits=limits) for name, c in zip(names, candidates)}
    files = {name: Path(c) for name, c in zip(names, candidates) if not c.startswith("asset:")}
    if not reference.startswith("asset:"):
        files["reference"] = Path(reference)
    backend = None if backend in (None, "auto") else backend
    # an output folder is held as a run's is (run/lock.py): a second eval or run
    # into it stops before writing
    # a first run's kernel compile says so in one line on stderr (as a stage's does)
    with output_lock(out) if out is not None else contextlib.nullcontext(), compile_notice():
        return evaluate_into(out, ref_mesh, meshes, views=views, res=res, seed=seed,
                             backend=backend, files=files, renderer=renderer, device=dev)
