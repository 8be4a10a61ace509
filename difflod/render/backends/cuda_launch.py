"""Launching numba-cuda kernels on torch tensors: the one place for the plumbing.

Every numba-cuda kernel module (visibility, and the fused differentiable
kernels) launches through these helpers, so all of them:

- run on torch's current CUDA stream of the tensors' device (no implicit
  synchronisation with torch's work, no second stream);
- take torch tensors without copies (`as_array`: a numba device array over
  the tensor's memory, or, under numba's CUDA simulator, a numpy view);
- work under NUMBA_ENABLE_CUDASIM=1 on CPU tensors, which is how the tests
  check the kernels on machines without a GPU.

`cuda` is numba's CUDA module, or None where it is not importable (then
`available()` is False and callers use their torch path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["SIM", "THREADS", "as_array", "available", "blocks", "cuda", "launch"]

THREADS = 256  # threads per block of the 1-D launches

try:
    from numba import config as _nb_config
    from numba import cuda

    SIM = bool(_nb_config.ENABLE_CUDASIM)
except ImportError:  # pragma: no cover - numba is a dependency
    cuda = None
    SIM = False


def available() -> bool:
    """True when numba's CUDA support (or its simulator) is importable."""
    return cuda is not None


def as_array(t: torch.Tensor) -> object:
    """The kernel argument for a tensor: a numpy view (simulator) or a numba device array."""
    if SIM:
        return t.detach().numpy()  # shares memory with the tensor
    return cuda.as_cuda_array(t.detach(), sync=False)  # pragma: no cover - needs a GPU


def blocks(n: int, threads: int = THREADS) -> int:
    """Blocks of `threads` threads that cover n items (at least one)."""
    return max(1, (n + threads - 1) // threads)


@contextlib.contextmanager
def launch(device: torch.device) -> Iterator[object]:
    """Context for launches on `device`: yields the stream argument of a launch.

    Usage: `with launch(t.device) as stream: kernel[blocks(n), THREADS, stream](...)`.
    """
    if cuda is None:
        raise RuntimeError("numba.cuda is not importable")
    if SIM:
        yield 0
        return
    idx = (
        device.index if device.index is not None else torch.cuda.current_device()
    )  # pragma: no cover
    with cuda.gpus[idx]:  # pragma: no cover - needs a GPU
        yield cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
