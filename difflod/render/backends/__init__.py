"""Compute backends for visibility (which triangle is nearest at each pixel).

A backend only solves visibility; everything differentiable is plain torch in
difflod.render.rasterize. Backends are chosen at call time:

- by the `name` argument, else the DIFFLOD_BACKEND environment variable, else "auto";
- "auto": "cuda" for CUDA tensors, otherwise "cpu";
- "cpu" (numba), "cuda" (GPU), "torch" (the plain-torch oracle, any device).

Importing this package imports neither numba nor any GPU code; each backend
module is imported when it is first chosen, and numba compiles lazily, except
what `warm_up` compiles ahead: on a first run, the CPU kernels of a render or
a training step in parallel processes (cpu_warmup.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import torch

from difflod.errors import BackendError

__all__ = ["BACKEND_NAMES", "Backend", "get_backend", "warm_up"]

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


def warm_up(name: str | None, device: torch.device | str, *, train: bool,
            on_compile: Callable[[int, int], None] | None = None) -> None:
    """Ready the kernels that renders (`train`: and training steps) on `device`
    will call, ahead of the first call.

    With the "cpu" backend, the numba kernels not yet in numba's disk cache are
    compiled now, in parallel processes (cpu_warmup.compile_kernels, which
    calls `on_compile(kernels, processes)` first); any other backend needs
    nothing. A run's first call compiles whatever this leaves out.
    Raises:
        BackendError: as get_backend.
    """
    if get_backend(name, device).name != "cpu":
        return
    from difflod.render.backends.cpu_warmup import compile_kernels

    compile_kernels(("render", "train") if train else ("render",), on_compile=on_compile)
