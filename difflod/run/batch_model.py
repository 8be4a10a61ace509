"""One model of a batch, start to finish: the unit of work a pool worker or a Ray task runs.

`run_model(job, config, out_root)`:

1. removes any earlier OUT/<name>/ (the batch calls this only for models
   without a completion record, so whatever is there is half-written);
2. opens the model once, turns its budgets into counts (fractions of its
   own triangle count), and runs `difflod simplify` into OUT/<name>/ —
   `simplify` for one budget, `simplify_chain` (run/lod.py: lod0/, lod1/,
   ..., lods.glb, one metrics.json) for several;
3. writes OUT/<name>/batch.json atomically, last: the completion record.
   A model without it is not done, whatever else its folder holds.

A wrong model or budget (a `DiffLodError`) is that model's failure: it is
returned as a record with its one-line error, never raised. Anything else
(a bug, a killed process, no memory) propagates, so a Ray task is retried.

`limit_threads(n)` caps torch's and numba's thread pools in this process,
so that workers x threads stays within the machine's cores.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from difflod.config import TrainConfig
from difflod.errors import DiffLodError
from difflod.io.atomic import atomic_write_text
from difflod.run.manifest import Job

__all__ = ["RECORD", "limit_threads", "one_line", "read_record", "run_model"]

RECORD = "batch.json"


def limit_threads(threads: int) -> None:
    """Cap this process's compute threads: torch's intra-op pool and numba's.

    NUMBA_NUM_THREADS / OMP_NUM_THREADS are set for what is imported later;
    pools already started are resized.
    """
    threads = max(1, int(threads))
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def one_line(error: BaseException) -> str:
    """An exception as one line: its type (unless a DiffLodError) and its message's
    first non-empty line."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if isinstance(error, DiffLodError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def read_record(folder: Path) -> dict[str, Any] | None:
    """The completion record of a model's folder, or None when it is absent or unreadable."""
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") == "ok" else None


def run_model(job: Job, config: TrainConfig, out_root: str | Path) -> dict[str, Any]:
    """Simplify one model into OUT/<job.name>/; return its record (status ok or failed).

    Args:
        job: the model, its budgets and name.
        config: its validated simplify config (the batch's settings and the row's).
        out_root: the batch's output folder.
    Returns:
        {"name", "model", "status": "ok"|"failed", "seconds", and when ok
        "budgets" (counts; a chain's finest first, as its lodK/ folders),
        "budget_text" (as given), "reference_triangles",
        "config" (the model's settings), "host" and "gpus" (CUDA_VISIBLE_DEVICES:
        where it ran); "error" (one line) when failed}.
    """
    from difflod.io.limits import limits_from
    from difflod.models import open_model
    from difflod.run.lod import simplify_chain
    from difflod.run.simplify import simplify

    out = Path(out_root) / job.name
    start = time.perf_counter()
    record: dict[str, Any] = {"name": job.name, "model": job.model}
    if out.exists():
        shutil.rmtree(out)
    config = config.replace(ref_mesh=job.model)
    try:
        mesh = open_model(job.model, mtl_override=config.mtl_override,
                          limits=limits_from(config))
        budgets = [b.resolve(mesh.num_triangles, job.model) for b in job.budgets]
        if len(budgets) == 1:
            simplify(mesh, budgets[0], out, config=config, quiet=True)
        else:  # an LOD chain: levels finest first, as simplify_chain makes them
            budgets = sorted(budgets, reverse=True)
            simplify_chain(mesh, budgets, out, config=config, quiet=True)
    except DiffLodError as e:
        return {**record, "status": "failed", "error": one_line(e),
                "seconds": time.perf_counter() - start}
    record.update(status="ok", budgets=budgets, reference_triangles=mesh.num_triangles,
                  budget_text=[b.text for b in job.budgets], config=config.to_dict(),
                  host=socket.gethostname(), gpus=os.environ.get("CUDA_VISIBLE_DEVICES"),
                  seconds=time.perf_counter() - start)
    atomic_write_text(out / RECORD, json.dumps(record, indent=1) + "\n")
    return record
