"""Compute backends for visibility (which triangle is nearest at each pixel).

A backend only solves visibility; everything differentiable is plain torch in
difflod.render.rasterize. Backends are chosen at call time:

- by the `name` argument, else the DIFFLOD_BACKEND environment variable, else "auto";
- "auto": "cuda" for CUDA tensors, otherwise "cpu";
- "cpu" (numba), "cuda" (GPU), "torch" (the plain-torch oracle, any device).

Importing this package imports neither numba nor any GPU code; each backend
module is imported when it is first chosen, and numba compiles lazily.
"""

from __future__ import annotations

import os
from typing import Protocol

import torch

from difflod.errors import BackendError

__all__ = ["BACKEND_NAMES", "Backend", "get_backend"]

BACKEND_NAMES = ("auto", "cpu", "cuda", "torch")


class Backend(Protocol):
    """What rasterize needs from a backend."""

    name: str

    def supports(self, device: torch.device) -> str | None:
        """None if tensors on `device` can be served, else the reason why not."""
        ...

    def visibility(
        self,
        clip: torch.Tensor,
        tris: torch.Tensor,
        h: int,
        w: int,
        depth_floor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Nearest triangle per pixel.

        Args:
            clip: `[B,V,4]` float32 contiguous clip-space positions.
            tris: `[F,3]` int32 contiguous, on the same device.
            h, w: resolution.
            depth_floor: `[B,H,W]` float32 or None; only fragments whose
                float32 z/w is > floor at that pixel count (depth peeling).
        Returns:
            `[B,H,W]` int32: triangle id + 1, 0 where empty.
        """
        ...


def _make(name: str) -> Backend:
    if name == "torch":
        from difflod.render.backends.torch_ref import TorchBackend

        return TorchBackend()
    if name == "cpu":
        from difflod.render.backends.cpu import CpuBackend

        return CpuBackend()
    from difflod.render.backends.cuda import CudaBackend

    return CudaBackend()


def get_backend(name: str | None, device: torch.device | str) -> Backend:
    """The backend to use for tensors on `device`.

    Args:
        name: "auto", "cpu", "cuda", "torch", or None (then DIFFLOD_BACKEND, then "auto").
        device: the device of the tensors to rasterize.
    Raises:
        BackendError: unknown name, or the backend cannot serve `device`.
    """
    device = torch.device(device)
    source = "argument"
    if name is None:
        name = os.environ.get("DIFFLOD_BACKEND") or "auto"
        source = "DIFFLOD_BACKEND" if os.environ.get("DIFFLOD_BACKEND") else "default"
    if not isinstance(name, str) or name.strip().lower() not in BACKEND_NAMES:
        raise BackendError(
            f"backend {name!r} (from {source}): unknown, expected one of {', '.join(BACKEND_NAMES)}"
        )
    name = name.strip().lower()
    if name == "auto":
        name = "cuda" if device.type == "cuda" else "cpu"
    backend = _make(name)
    reason = backend.supports(device)
    if reason is not None:
        raise BackendError(f"backend {name!r} cannot serve tensors on {device}: {reason}")
    return backend
