"""torch.compile for the pure-torch pieces of a training step.

A GPU training step is limited by the host, not the GPU: each small torch op
costs ~10 us of Python and launch time while the GPU finishes it in ~2 us
(measured on an H200: 1,873 launches, 53 ms of host time for 13 ms of GPU
work per step). `compiled(fn)` runs `fn` through torch.compile (Inductor;
shapes static at first, as a recorded step's are, and made dynamic by the
first call with other shapes, so changing pixel counts then reuse one
compilation),
which fuses its elementwise chains, forward and backward, into a few Triton
kernels. Users: the shading pass (shading/shade.py `compiled_core`) and the
renderer's per-step normals and tangents (render/pipeline.py). The eager
functions stay the reference; tests hold the compiled paths to them.

Inductor needs Triton (CUDA builds of PyTorch carry it) or, on a CPU, a C++
compiler; the trainer compiles only when the config key `compile` is "on"
(on the H200 the first compiled training step has not yet been seen to
finish within 150 s, so it is no default). Tests set BACKEND to "aot_eager": the same graph capture and
autograd split, run by eager kernels, needing no compiler.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

__all__ = ["BACKEND", "compiled"]

#: torch.compile's backend for `compiled` (tests use "aot_eager")
BACKEND = "inductor"


def compiled(fn: Callable) -> Callable:
    """`fn` through torch.compile, made once per function and backend
    (compilation happens at the first call, then per new guard; a change of
    shape recompiles once with dynamic shapes)."""
    return _compile(fn, BACKEND)


@functools.cache
def _compile(fn: Callable, backend: str) -> Callable:
    return torch.compile(fn, backend=backend, dynamic=None)
