"""Small constant vectors made on the device they are used on.

`torch.tensor([0.0, 0.0, 1.0], device=cuda)` copies its values from host
memory, and a copy from pageable host memory is not allowed while a CUDA
graph is being recorded (optimize/graphed.py records the whole training
step). `vector` builds the same values from fills on the device, which
record like any other kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["vector"]


def vector(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`[len(values)]` tensor of `values`, made by fills on `device` (no host copy)."""
    return torch.cat([torch.full((1,), float(v), dtype=dtype, device=device) for v in values])
