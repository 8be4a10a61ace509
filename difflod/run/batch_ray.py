"""A batch on a Ray cluster: one Ray task per model.

Ray does the scheduling, the retries and the transport: each model is one
task (`_ray_simplify`, which calls `run_model` and writes its own
OUT/<name>/ on a file system every node shares; its worker process is
titled "ray::_ray_simplify" while it runs), asking for `threads` CPUs and, where the cluster has GPUs, one GPU
(Ray then sets CUDA_VISIBLE_DEVICES for it). A task that fails for a reason
other than a wrong model (its worker or node died, an exception) is retried
by Ray itself, `max_retries` times (`retry_exceptions=True`); after that the
model is recorded as failed with Ray's one-line reason. Wrong models and
budgets are not retried: run_model returns them as failed records. Results
come back through Ray's object store as they finish (`ray.wait`).

Addresses: `auto` (the cluster this machine belongs to, as `ray start`
made it), `HOST:PORT` or `ray://...` (Ray's own forms), or `local` (a
private single-machine instance, started and stopped with the batch, on
127.0.0.1 and without a dashboard). Usage statistics are switched off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from difflod.config import TrainConfig
from difflod.errors import DiffLodError
from difflod.run.batch_model import limit_threads, one_line, run_model
from difflod.run.manifest import Job

__all__ = ["LOCAL", "run_ray"]

LOCAL = "local"


def _ray_simplify(job: Job, config: TrainConfig, out_root: str) -> dict[str, Any]:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    limit_threads(int(max(1, cpus)))
    return run_model(job, config, out_root)


def _connect(address: str, threads: int) -> None:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
    except ImportError:
        raise DiffLodError("--ray needs Ray: pip install 'difflod[ray]'") from None
    try:
        if address == LOCAL:
            ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, logging_level="warning")
        else:
            ray.init(address=address, log_to_driver=False, logging_level="warning")
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise DiffLodError(f"--ray {address}: cannot connect to a Ray cluster: "
                           f"{one_line(e)}") from None
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < threads:
        ray.shutdown()
        raise DiffLodError(f"--threads {threads}: the Ray cluster at {address} has only "
                           f"{cpus:g} CPUs")


def _reason(error: BaseException) -> str:
    import ray.exceptions

    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        return f"ray: {one_line(error.cause)}"
    return f"ray: {one_line(error)}"


def run_ray(tasks: Sequence[tuple[Job, TrainConfig]], out_root: Path, address: str, *,
            retries: int, threads: int, on_result: Callable[[dict[str, Any]], None]) -> None:
    """Run every (job, config) as a Ray task; call `on_result(record)` as each ends.

    Raises:
        DiffLodError: Ray is missing, or no cluster answers at `address`.
    """
    if retries < 0:
        raise DiffLodError(f"--retries must be >= 0, got {retries}")
    _connect(address, threads)
    import ray

    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        remote = ray.remote(_ray_simplify).options(num_cpus=threads, num_gpus=gpus,
                                           max_retries=retries, retry_exceptions=True)
        root = str(Path(out_root).resolve())
        pending = {remote.remote(job, config, root): job for job, config in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as e:
                    record = {"name": job.name, "model": job.model, "status": "failed",
                              "error": _reason(e), "seconds": 0.0}
                on_result(record)
    finally:
        ray.shutdown()
