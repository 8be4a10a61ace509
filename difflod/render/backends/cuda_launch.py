"""Launching numba-cuda kernels on torch tensors: the one place for the plumbing.

Every numba-cuda kernel module (visibility, and the fused differentiable
kernels) launches through `launch`, so all of them:

- run on torch's current CUDA stream of the tensors' device (no implicit
  synchronisation with torch's work, no second stream);
- take torch tensors as they are (no copies), and Python/NumPy scalars;
- work under NUMBA_ENABLE_CUDASIM=1 on CPU tensors, which is how the tests
  check the kernels on machines without a GPU.

Usage::

    with launch(t.device) as run:
        run(kernel, n, tensor_a, tensor_b, 3, 0.5)   # blocks(n) x THREADS threads

Why a launch path of our own: numba-cuda's dispatcher spends most of a
launch on the host, not the GPU. Measured on an H200 (numba-cuda 0.30, 8
tensor arguments and 4 scalars): converting the tensors alone
(`cuda.as_cuda_array`, which reads torch's Python-level
`__cuda_array_interface__`, 30 us of it, and builds a device-array object
per tensor) took 171 us per launch, before the dispatcher's own typing and
argument marshalling; a torch op costs ~10 us. With this path the render
benchmark's forward+backward (18 launches) went from 15.7 to 5.1 ms, with
the other changes of that session. The first launch of a kernel with a
given argument signature (tensor dtype and rank; scalar type; a
non-contiguous tensor always takes the dispatcher) goes through the
dispatcher, which compiles and type-checks it, or loads it from numba-cuda's
on-disk cache (every kernel is `cuda.jit(cache=True)`; a kernel loaded from
the cache takes the direct path as well: the GPU tests pass in a process
that loads every kernel from it); later launches reuse the compiled kernel
and pass each tensor as the flattened array record numba's kernels take (meminfo,
parent, size, itemsize, data pointer, shape, byte strides) straight to
cuda.core's `launch`, which is what the dispatcher itself ends with. Where
that path is not available (another numba-cuda layout, a kernel compiled
with debug=True, a tensor on a device other than the current one) every
launch takes the dispatcher; tests/render/test_cuda_launch.py checks the
results of both paths on a GPU.

`cuda` is numba's CUDA module, or None where it is not importable (then
`available()` is False and callers use their torch path).
"""

from __future__ import annotations

import ctypes
from typing import Self

import numpy as np
import torch

__all__ = ["SIM", "THREADS", "Launcher", "as_array", "available", "blocks", "cuda", "launch"]

THREADS = 256  # threads per block of the 1-D launches

try:
    from numba import config as _nb_config
    from numba import cuda

    SIM = bool(_nb_config.ENABLE_CUDASIM)
except ImportError:  # pragma: no cover - numba is a dependency
    cuda = None
    SIM = False

if cuda is not None and not SIM and not hasattr(np, "row_stack"):  # pragma: no cover - GPU
    # numba-cuda (0.2x) registers an overload for np.row_stack when it first
    # compiles any kernel, and NumPy 2.4 removed that alias of vstack: restore
    # the alias (the same function) so the kernels compile on such installs
    np.row_stack = np.vstack


def available() -> bool:
    """True when numba's CUDA support (or its simulator) is importable."""
    return cuda is not None


def as_array(t: torch.Tensor) -> object:
    """The dispatcher's argument for a tensor: a numpy view (simulator) or a numba device array."""
    if SIM:
        return t.detach().numpy()  # shares memory with the tensor
    return cuda.as_cuda_array(t.detach(), sync=False)  # pragma: no cover - needs a GPU


def blocks(n: int, threads: int = THREADS) -> int:
    """Blocks of `threads` threads that cover n items (at least one)."""
    return max(1, (n + threads - 1) // threads)


def _signature(args: tuple) -> tuple | None:
    """What selects a compiled kernel: per tensor (dtype, rank), per scalar its type.

    None when a tensor is not contiguous: numba compiles such arrays for the
    layout their strides show ("F" or "A"), which the signature cannot tell,
    so those launches always take the dispatcher.
    """
    sig = []
    for a in args:
        if isinstance(a, torch.Tensor):
            if not a.is_contiguous():
                return None
            sig.append((a.dtype, a.dim()))
        else:
            sig.append(type(a))
    return tuple(sig)


class _Compiled:
    """A compiled kernel launched without the dispatcher (see the module docstring)."""

    def __init__(self, kernel: object, argument_types: tuple, core: tuple) -> None:
        self.kernel = kernel  # cuda.core Kernel
        self.launch_fn, self.config_cls = core
        self.packers = [self._packer(t) for t in argument_types]
        self.configs: dict = {}  # LaunchConfig per grid size (building one costs ~10 us)

    @staticmethod
    def _packer(ty: object):  # pragma: no cover - needs a GPU
        from numba.core import types

        if isinstance(ty, types.Array):
            return _pack_tensor
        if isinstance(ty, types.Boolean):
            return lambda v, out: out.append(bool(v))
        if isinstance(ty, types.Integer):
            ctype = getattr(ctypes, f"c_{ty}")
            return lambda v, out: out.append(ctype(int(v)))
        if ty == types.float64:
            return lambda v, out: out.append(ctypes.c_double(float(v)))
        if ty == types.float32:
            return lambda v, out: out.append(ctypes.c_float(float(v)))
        raise TypeError(f"no direct launch for argument type {ty}")

    def __call__(self, grid: int, stream: object, args: tuple) -> None:  # pragma: no cover
        packed: list = []
        for pack, a in zip(self.packers, args):
            pack(a, packed)
        config = self.configs.get(grid)
        if config is None:
            config = self.configs[grid] = self.config_cls(grid=grid, block=THREADS, shmem_size=0)
        self.launch_fn(stream, config, self.kernel, *packed)


def _pack_tensor(t: torch.Tensor, out: list) -> None:  # pragma: no cover - needs a GPU
    """numba's flattened array record: meminfo, parent, size, itemsize, data, shape, strides."""
    item = t.element_size()
    out += (0, 0, t.numel(), item, t.data_ptr(), *t.shape, *(s * item for s in t.stride()))


def _core_launch() -> tuple | None:  # pragma: no cover - needs a GPU
    """cuda.core's (launch, LaunchConfig), which numba-cuda's dispatcher launches with."""
    try:
        from cuda.core import LaunchConfig
        from cuda.core import launch as core_launch
    except ImportError:
        return None
    return core_launch, LaunchConfig


class Launcher:
    """Launches kernels on one device's current torch stream; made by `launch`.

    A context manager (`with launch(dev) as run:`) and the `run` callable.
    Compiled kernels are remembered per (kernel, device, argument signature)
    in `compiled`, which every launcher shares; an entry is None where the
    direct path is not available for that kernel.
    """

    def __init__(self, index: int, stream: object, compiled: dict, direct: bool) -> None:
        self.index, self.stream, self.compiled, self.direct = index, stream, compiled, direct

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, kernel: object, n: int, *args: object) -> None:
        """Run `kernel` on blocks(n) x THREADS threads with args (tensors and scalars)."""
        grid = blocks(n)
        if SIM:
            kernel[grid, THREADS, 0](  # type: ignore[index]
                *(as_array(a) if isinstance(a, torch.Tensor) else a for a in args))
            return
        sig = _signature(args)  # pragma: no cover - needs a GPU
        key = (kernel, self.index, sig)
        fast = self.compiled.get(key, False) if sig is not None else None
        if fast and self.direct:
            fast(grid, self.stream, args)
            return
        converted = tuple(as_array(a) if isinstance(a, torch.Tensor) else a for a in args)
        with cuda.gpus[self.index]:
            kernel[grid, THREADS, self.stream](*converted)  # type: ignore[index]
            if fast is False:  # first launch of this signature: compiled now
                self.compiled[key] = self._direct(kernel, converted)

    @staticmethod
    def _direct(kernel: object, converted: tuple) -> _Compiled | None:  # pragma: no cover
        """The dispatcher's compiled kernel for these arguments, launched directly; or None."""
        core = _core_launch()
        if core is None:
            return None
        try:
            argtypes = tuple(kernel.typeof_pyval(a) for a in converted)  # type: ignore[attr-defined]
            compiled = kernel.overloads[argtypes]  # type: ignore[attr-defined]
            if getattr(compiled, "debug", False) or getattr(compiled, "cooperative", False):
                return None
            cufunc = compiled._codelibrary.get_cufunc()
            return _Compiled(cufunc.kernel, tuple(compiled.argument_types), core)
        except (AttributeError, KeyError, TypeError):
            return None


_COMPILED: dict = {}  # the launchers' shared cache of compiled kernels (see Launcher)
_STREAMS: dict = {}  # numba stream objects per (device index, torch stream handle)


def _raw_stream(idx: int) -> int:  # pragma: no cover - needs a GPU
    """Handle of torch's current stream on device idx (torch's fast accessor where present)."""
    fast = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if fast is not None:
        return fast(idx)
    return torch.cuda.current_stream(idx).cuda_stream


def launch(device: torch.device) -> Launcher:
    """The launcher for `device`'s current torch stream: `with launch(dev) as run: run(k, n, ...)`."""
    if cuda is None:
        raise RuntimeError("numba.cuda is not importable")
    if SIM:
        return Launcher(0, 0, _COMPILED, False)
    current = torch.cuda.current_device()  # pragma: no cover - needs a GPU
    idx = device.index if device.index is not None else current  # pragma: no cover
    handle = _raw_stream(idx)  # pragma: no cover
    stream = _STREAMS.get((idx, handle))  # pragma: no cover
    if stream is None:  # pragma: no cover - needs a GPU
        with cuda.gpus[idx]:
            stream = _STREAMS[(idx, handle)] = cuda.external_stream(handle)
    # direct launches need the kernel's context current: torch's device is idx
    return Launcher(idx, stream, _COMPILED, idx == current)  # pragma: no cover
