"""`difflod batch`: simplify a whole library, resumably, with one report.

Stages, in order:

1. read the jobs (run/manifest.py: a CSV/JSON manifest or a folder) and
   build every model's validated config (`simplify_config`: the batch's
   config file and flags, then the row's own keys) — any error stops here,
   before a model runs, naming the file and row;
2. skip the models already complete: OUT/<name>/batch.json (written last
   and atomically by run/batch_model.py) exists and records the same model,
   budgets and config. Every other OUT/<name>/ is redone from scratch;
3. run the rest on a local process pool (run/batch_pool.py, the default)
   or on a Ray cluster (run/batch_ray.py, `ray=ADDRESS`), with a progress
   bar (tqdm: models done, failed, ETA). Before a local pool of CPU workers
   starts, the CPU kernels a step calls are compiled here, once and side by
   side (render.backends.warm_up; first run only): each worker would
   otherwise compile all of them, with its few threads, and the bar would
   stand still meanwhile without a word;
4. write OUT/summary.csv and OUT/report.html (run/batch_report.py) over
   every model of the batch, the skipped ones included.

A model that fails (a corrupt file, a budget that does not fit it) is
recorded with its one-line error; the others go on.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflod.config import TrainConfig
from difflod.errors import BackendError, ConfigError, DiffLodError
from difflod.run.batch_model import read_record
from difflod.run.manifest import Job, ManifestError, read_jobs

__all__ = ["BatchResult", "batch", "plan"]


@dataclass
class BatchResult:
    """What a batch did.

    Attributes:
        out_dir: OUT.
        completed: names of the models completed by this run.
        skipped: names of the models already complete (not rerun).
        failed: name -> one-line error, for the models that failed.
        rows: the summary's rows (batch_report.result_rows).
    """

    out_dir: Path
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


def _configs(jobs: list[Job], config_path: str | Path | None,
             overrides: Mapping[str, Any]) -> list[TrainConfig]:
    from difflod.run.simplify import simplify_config

    shared = simplify_config(config_path, overrides)
    out = []
    for job in jobs:
        if not job.settings:
            out.append(shared)
            continue
        try:
            out.append(simplify_config(config_path, {**overrides, **job.settings}))
        except ConfigError as e:  # load_config names the source "command line": say the row
            text = str(e)
            for source in (f"{config_path} + command line: ", "command line: "):
                text = text.removeprefix(source)
            raise ManifestError(f"{job.where}: {text}") from None
    return out


def _is_complete(out: Path, job: Job, config: TrainConfig) -> dict[str, Any] | None:
    record = read_record(out / job.name)
    if record is None:
        return None
    same = (record.get("model") == job.model
            and record.get("budget_text") == [b.text for b in job.budgets]
            and record.get("config") == config.replace(ref_mesh=job.model).to_dict())
    return record if same else None


def plan(jobs: list[Job], configs: list[TrainConfig], out: Path
         ) -> tuple[list[tuple[Job, TrainConfig]], list[dict[str, Any]]]:
    """Split the batch into (to run, records of those already complete)."""
    todo, done = [], []
    for job, config in zip(jobs, configs):
        record = _is_complete(out, job, config)
        if record is None:
            todo.append((job, config))
        else:
            done.append(record)
    return todo, done


def _progress(total: int, initial: int, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="model", desc="batch", file=sys.stderr,
                disable=quiet, dynamic_ncols=True)


def _warm_cpu_kernels(configs: list[TrainConfig], quiet: bool) -> None:
    """Compile here, side by side, the CPU kernels that the workers' steps will load
    from numba's disk cache, if some model trains with them (the "cpu" backend on
    the CPU)."""
    from tqdm import tqdm

    from difflod.optimize.progress import warmup_message
    from difflod.render.backends import warm_up

    on_cpu = [c for c in configs if c.device in ("auto", "cpu")
              and c.render_backend in (None, "cpu")]
    if not on_cpu:
        return
    try:
        warm_up(on_cpu[0].render_backend, "cpu", train=True, on_compile=None if quiet else
                lambda kernels, processes: tqdm.write(warmup_message(kernels, processes),
                                                      file=sys.stderr))
    except BackendError:  # DIFFLOD_BACKEND names none: each model's record says so
        return


def batch(source: str | Path, out_dir: str | Path, *, triangles: str | None = None,
          config_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
          workers: int | None = None, threads: int | None = None, ray: str | None = None,
          retries: int = 2, quiet: bool = False) -> BatchResult:
    """Simplify every model of a manifest or folder into OUT_DIR/<name>/; write the report.

    Args:
        source: a .csv / .json manifest or a folder of models (see run/manifest.py).
        out_dir: OUT; created if needed. Complete results already there are kept.
        triangles: budgets for a folder and for rows without their own ("5%,1%").
        config_path: a JSON config for every model (simplify's keys).
        overrides: config keys for every model (the command line's flags).
        workers: local pool size (default: one per GPU, else one per 4 cores).
        threads: threads per worker (local) or CPUs per task (Ray).
        ray: a Ray address (`auto`, `HOST:PORT`, `ray://...`) or `local`; None: local pool.
        retries: Ray's retries of a task that crashed (not of a wrong model).
        quiet: no progress bar.
    Raises:
        DiffLodError: a bad manifest, folder, budget, config or argument.
    """
    for flag, value, least in (("--workers", workers, 1), ("--threads", threads, 1),
                               ("--retries", retries, 0)):
        if value is not None and value < least:
            raise DiffLodError(f"{flag} must be >= {least}, got {value}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DiffLodError(f"{out}: exists and is not a folder")
    jobs = read_jobs(source, triangles, exclude=out)
    configs = _configs(jobs, config_path, dict(overrides or {}))
    out.mkdir(parents=True, exist_ok=True)
    todo, done = plan(jobs, configs, out)
    result = BatchResult(out_dir=out, skipped=[r["name"] for r in done])
    records = {r["name"]: r for r in done}
    bar = _progress(len(jobs), len(done), quiet)

    def on_result(record: dict[str, Any]) -> None:
        records[record["name"]] = record
        if record["status"] == "ok":
            result.completed.append(record["name"])
        else:
            result.failed[record["name"]] = record.get("error", "")
        bar.update(1)
        bar.set_postfix(done=len(result.completed) + len(result.skipped),
                        failed=len(result.failed))

    try:
        if todo and ray is not None:
            from difflod.run.batch_ray import run_ray

            run_ray(todo, out, ray, retries=retries, threads=threads or 1, on_result=on_result)
        elif todo:
            from difflod.run.batch_pool import pool_shape, run_pool

            shape = pool_shape(workers, len(todo))
            if threads is not None:
                shape = dataclasses.replace(shape, threads=threads)
            if shape.gpus == 0:
                _warm_cpu_kernels([config for _, config in todo], quiet)
            run_pool(todo, out, shape, on_result)
    finally:
        bar.close()
        from difflod.run.batch_report import write_summary

        result.rows = write_summary(out, [records[j.name] for j in jobs if j.name in records])
    return result
