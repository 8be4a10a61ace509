"""One optimization spread over several GPUs (or CPU processes) of one host.

`train_distributed(config, processes)` starts one process per GPU with
torch.multiprocessing, joins them in a torch.distributed group (NCCL on
GPUs, gloo on the CPU) over the loopback interface, and runs `train` in
each: every process draws the same full batch of views, renders its share,
and gradients are averaged with one all-reduce per step (Trainer._allreduce),
so the result matches a single-process run with the same seed. Rank 0
writes every file. Launched by torchrun instead (WORLD_SIZE etc. set), the
group is taken from the environment.

NVLink multicast (NCCL NVLS) is switched off: it can take a shared host's
GPUs out of service.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from difflod.config import TrainConfig
from difflod.errors import DiffLodError

__all__ = ["in_torchrun", "train_distributed", "train_torchrun"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _backend(use_cuda: bool) -> str:
    return "nccl" if use_cuda else "gloo"


def _worker(rank: int, world: int, port: int, use_cuda: bool, config: TrainConfig,
            out_root: str, resume: bool, quiet: bool) -> None:
    import torch.distributed as dist

    from difflod.run.train import train

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    if use_cuda:
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        device = torch.device("cpu")
    dist.init_process_group(_backend(use_cuda), init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        train(config, out_root=out_root, resume=resume, quiet=quiet, rank=rank,
              world_size=world, device=device)
    finally:
        dist.destroy_process_group()


def train_distributed(config: TrainConfig, processes: int, *, out_root: str | Path = "out",
                      resume: bool = False, quiet: bool = False,
                      cpu: bool | None = None) -> Path:
    """Train with `processes` processes (one per GPU; gloo CPU processes when
    `cpu` or no GPU). Returns the output folder written by rank 0."""
    use_cuda = torch.cuda.is_available() if cpu is None else not cpu
    if processes < 1:
        raise DiffLodError(f"--gpus must be >= 1, got {processes}")
    if use_cuda and processes > torch.cuda.device_count():
        raise DiffLodError(f"--gpus {processes} asked for, but torch sees "
                           f"{torch.cuda.device_count()} GPU(s)")
    if config.batch % processes:
        raise DiffLodError(f"batch {config.batch} does not split over {processes} processes: "
                           f"make 'batch' a multiple of the GPU count")
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(processes, _free_port(), use_cuda, config, str(out_root), resume,
                            quiet), nprocs=processes, join=True)
    return config.output_dir(out_root)


def in_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def train_torchrun(config: TrainConfig, *, out_root: str | Path = "out", resume: bool = False,
                   quiet: bool = False) -> Path:
    """Entry point under torchrun: the group comes from the environment."""
    import torch.distributed as dist

    from difflod.run.train import train

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() and config.device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(_backend(use_cuda))
    try:
        train(config, out_root=out_root, resume=resume, quiet=quiet, rank=rank,
              world_size=world,
              device=torch.device("cuda", local) if use_cuda else torch.device("cpu"))
    finally:
        dist.destroy_process_group()
    return config.output_dir(out_root)
