"""A batch on this machine: a process pool (concurrent.futures, spawn), sized to it.

- With GPUs: one worker per GPU, each pinned to its own device
  (CUDA_VISIBLE_DEVICES set by the worker's initializer before CUDA starts,
  so "cuda" in that worker is its GPU), and the CPU cores shared among them
  for the host-side work.
- Without: CPU workers sharing the cores; each worker's torch and numba
  thread pools are capped so that workers x threads <= cores (numba's
  parallel kernels and torch's intra-op pool would otherwise each start one
  thread per core in every worker).

`--workers N` sets the count; by default a CPU batch uses one worker per 4
cores (at least one), every worker with cores // workers threads.

A model that raises anything but a DiffLodError (a bug) stops the batch
with that exception, as everywhere in difflod (the report is still written;
the models completed so far are kept and skipped on the re-run).
A worker that dies (killed, out of memory) breaks the pool: the models it
had not finished are recorded as failed with that line, and a re-run does
them (bounded retries are the Ray executor's job: batch_ray.py).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from difflod.config import TrainConfig
from difflod.errors import DiffLodError
from difflod.run.batch_model import limit_threads, run_model
from difflod.run.manifest import Job

__all__ = ["PoolShape", "make_executor", "pool_shape", "run_pool"]

_CORES_PER_CPU_WORKER = 4


@dataclass(frozen=True)
class PoolShape:
    """How a local batch runs: `workers` processes of `threads` threads; `gpus` > 0 pins
    worker k to GPU k."""

    workers: int
    threads: int
    gpus: int


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pool_shape(workers: int | None, jobs: int, *, gpus: int | None = None,
               cores: int | None = None) -> PoolShape:
    """The pool for `jobs` models on this machine (or the given `gpus` / `cores`).

    Raises:
        DiffLodError: `workers` < 1, or more workers than GPUs on a GPU machine.
    """
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cores = cores if cores is not None else _cores()
    if workers is not None and workers < 1:
        raise DiffLodError(f"--workers must be >= 1, got {workers}")
    if gpus > 0:
        if workers is not None and workers > gpus:
            raise DiffLodError(f"--workers {workers}: this machine has {gpus} GPU(s), "
                               f"one worker each at most")
        n = workers or gpus
    else:
        n = workers or max(1, cores // _CORES_PER_CPU_WORKER)
    n = max(1, min(n, jobs))
    return PoolShape(workers=n, threads=max(1, cores // n), gpus=min(gpus, n))


def _init_worker(threads: int, gpu_queue: Any) -> None:
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())
    limit_threads(threads)


def _failed(job: Job, message: str) -> dict[str, Any]:
    return {"name": job.name, "model": job.model, "status": "failed", "error": message,
            "seconds": 0.0}


def make_executor(shape: PoolShape) -> ProcessPoolExecutor:
    """A spawn process pool of `shape.workers` workers, each with `shape.threads` threads
    and, when `shape.gpus` > 0, its own GPU."""
    ctx = multiprocessing.get_context("spawn")
    queue = None
    if shape.gpus > 0:
        queue = ctx.Queue()
        for k in range(shape.workers):
            queue.put(k % shape.gpus)
    return ProcessPoolExecutor(max_workers=shape.workers, mp_context=ctx,
                               initializer=_init_worker, initargs=(shape.threads, queue))


def run_pool(tasks: Sequence[tuple[Job, TrainConfig]], out_root: Path, shape: PoolShape,
             on_result: Callable[[dict[str, Any]], None]) -> None:
    """Run every (job, config) in a spawn process pool; call `on_result(record)` as each ends."""
    with make_executor(shape) as pool:
        pending: dict[Future, Job] = {pool.submit(run_model, job, config, str(out_root)): job
                                      for job, config in tasks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    on_result(future.result())
                except BrokenProcessPool:
                    on_result(_failed(job, "a worker process died (killed, or out of "
                                           "memory) before this model finished"))
