"""GPU (numba-cuda) kernels for attribute interpolation, used by interpolate's "cuda" backend.

Why hand-written: the plain-torch path in difflod.render.interpolate (kept as
the reference, backend "torch") launches ~25 small kernels forward (index
arithmetic, three `[N,C]` gathers, elementwise products, the derivative
expression) and ~30 backward (autograd of out_da, three `index_add_`
scatters), each a full pass over the pixels. Here one thread per pixel does
out and out_da in one launch, and one thread per pixel does every gradient
in one launch: barycentric and rast_db gradients are per pixel, the
attribute gradient is scattered with `cuda.atomic.add` (so its summation
order, and its last bits, vary from run to run).

Both kernels run in the tensors' dtype (float32 or float64) on torch's
current stream, launched through cuda_launch (no copies, no host sync); the
caller's index check is the one sync per call (none with validate=False).
Host cost per launch was mostly numba's argument handling (tens of
microseconds per launch, ~10-30 us per array argument, before cuda_launch's
direct path skipped most of it), so the small metadata (sizes, pixels and rows per
image, the derivative channels) is one int64 device array, built and copied
to the device once per (sizes, channels, device) by an lru_cache instead of
a host-to-device copy of the channel list every call; the backward's five
switches are one flags int, and stand-ins for absent tensors are cached.
Per call: forward 8 array + 3 scalar arguments and a channel-list copy
before, 8 arrays and no scalars or copies now; backward 10 arrays + 9
scalars and a copy before, 10 arrays + 2 scalars now (one launch each way;
tests/render/test_interpolate_fused.py pins these counts). Pixels whose
triangle id or vertex indices are out of range read nothing and are counted
into `bad`, so a malformed raster can never make a kernel read out of bounds.

Under NUMBA_ENABLE_CUDASIM=1 the same kernels run on CPU tensors (numba's
simulator); the tests check them that way on machines without a GPU.
Importing this module compiles nothing (numba-cuda compiles on first launch).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from difflod.render.backends.cuda_launch import available, cuda, launch

__all__ = ["available", "backward", "forward"]


if cuda is not None:

    @cuda.jit(device=True)
    def _corners(rast, tris, n, hw, img_rows, nv, nf):  # pragma: no cover - numba
        """Attribute rows (i0, i1, i2) of pixel n's triangle; i0 = -1 empty, -2 out of range."""
        tid = int(rast[n, 3]) - 1
        if tid < 0:
            return -1, 0, 0
        if tid >= nf:
            return -2, 0, 0
        j0, j1, j2 = tris[tid, 0], tris[tid, 1], tris[tid, 2]
        if min(min(j0, j1), j2) < 0 or max(max(j0, j1), j2) >= nv:
            return -2, 0, 0
        base = (n // hw) * img_rows
        return base + j0, base + j1, base + j2

    @cuda.jit
    def _forward_kernel(attr, rast, tris, db, meta, out, out_da, bad):  # pragma: no cover
        """meta: (vertices, triangles, channels, K, pixels per image, rows per image,
        derivative channels...)."""
        n = cuda.grid(1)
        if n >= rast.shape[0]:
            return
        nv, nf, nc, nk, hw, img_rows = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
        i0, i1, i2 = _corners(rast, tris, n, hw, img_rows, nv, nf)
        if i0 < 0:
            for c in range(nc):
                out[n, c] = 0
            for k in range(2 * nk):
                out_da[n, k] = 0
            if i0 == -2:
                cuda.atomic.add(bad, 0, 1)
            return
        u = rast[n, 0]
        v = rast[n, 1]
        for c in range(nc):
            a0 = attr[i0, c]
            out[n, c] = a0 + u * (attr[i1, c] - a0) + v * (attr[i2, c] - a0)
        if nk > 0:
            dux, duy, dvx, dvy = db[n, 0], db[n, 1], db[n, 2], db[n, 3]
            for k in range(nk):
                c = meta[6 + k]
                a0 = attr[i0, c]
                d1 = attr[i1, c] - a0
                d2 = attr[i2, c] - a0
                out_da[n, 2 * k] = d1 * dux + d2 * dvx
                out_da[n, 2 * k + 1] = d1 * duy + d2 * dvy

    @cuda.jit
    def _backward_kernel(attr, rast, tris, db, meta, zero, flags, g_out, g_da,
                         g_attr, g_rast, g_db):  # pragma: no cover - numba
        """flags: 1 g_out given, 2 g_da given, 4 attr, 8 rast, 16 rast_db gradients wanted."""
        n = cuda.grid(1)
        if n >= rast.shape[0]:
            return
        nv, nf, nc, nk, hw, img_rows = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
        has_out = (flags & 1) != 0
        has_da = (flags & 2) != 0
        need_attr = (flags & 4) != 0
        need_uv = (flags & 8) != 0
        need_db = (flags & 16) != 0
        i0, i1, i2 = _corners(rast, tris, n, hw, img_rows, nv, nf)
        gu = zero
        gv = zero
        gdb0 = zero
        gdb1 = zero
        gdb2 = zero
        gdb3 = zero
        if i0 >= 0 and has_out:
            u = rast[n, 0]
            v = rast[n, 1]
            for c in range(nc):
                g = g_out[n, c]
                if need_attr:
                    g1 = g * u
                    g2 = g * v
                    cuda.atomic.add(g_attr, (i0, c), g - g1 - g2)
                    cuda.atomic.add(g_attr, (i1, c), g1)
                    cuda.atomic.add(g_attr, (i2, c), g2)
                if need_uv:
                    a0 = attr[i0, c]
                    gu += g * (attr[i1, c] - a0)
                    gv += g * (attr[i2, c] - a0)
        if i0 >= 0 and has_da:
            dux, duy, dvx, dvy = db[n, 0], db[n, 1], db[n, 2], db[n, 3]
            for k in range(nk):
                c = meta[6 + k]
                gx = g_da[n, 2 * k]
                gy = g_da[n, 2 * k + 1]
                if need_attr:
                    g1 = gx * dux + gy * duy
                    g2 = gx * dvx + gy * dvy
                    cuda.atomic.add(g_attr, (i0, c), -(g1 + g2))
                    cuda.atomic.add(g_attr, (i1, c), g1)
                    cuda.atomic.add(g_attr, (i2, c), g2)
                if need_db:
                    a0 = attr[i0, c]
                    d1 = attr[i1, c] - a0
                    d2 = attr[i2, c] - a0
                    gdb0 += gx * d1
                    gdb1 += gy * d1
                    gdb2 += gx * d2
                    gdb3 += gy * d2
        if need_uv:
            g_rast[n, 0] = gu
            g_rast[n, 1] = gv
            g_rast[n, 2] = zero
            g_rast[n, 3] = zero
        if need_db:
            g_db[n, 0] = gdb0
            g_db[n, 1] = gdb1
            g_db[n, 2] = gdb2
            g_db[n, 3] = gdb3


_NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


@functools.lru_cache(maxsize=64)
def _dummy(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached `[1,1]` zero stand-in argument (kernels take no None and no zero-size arrays)."""
    return torch.zeros(1, 1, dtype=dtype, device=device)


def _arg(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The kernel argument for t; a cached stand-in of like's dtype when t is None or empty.

    Kernels never read a stand-in: the sizes and flags passed with it say so.
    """
    if t is None or t.numel() == 0:
        return _dummy(like.dtype, like.device)
    return t


@functools.lru_cache(maxsize=64)
def _meta(sizes: tuple[int, ...], channels: tuple[int, ...], device: torch.device
          ) -> torch.Tensor:
    """The kernels' int64 metadata array: sizes (nv, nf, nc, nk, hw, img_rows), then channels.

    Cached per (sizes, channels, device): a training step's calls reuse the
    device copy instead of copying the channel list to the device every call.
    """
    return torch.tensor(list(sizes) + list(channels), dtype=torch.int64).to(device)


def _meta_arg(attr: torch.Tensor, tris: torch.Tensor, channels: Sequence[int], hw: int,
              img_rows: int) -> torch.Tensor:
    """The metadata argument of a call (see _meta)."""
    nv = img_rows if img_rows > 0 else attr.shape[0]
    sizes = (nv, tris.shape[0], attr.shape[1], len(channels), hw, img_rows)
    return _meta(sizes, tuple(int(c) for c in channels), attr.device)


def forward(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
            rast_db: torch.Tensor | None, channels: Sequence[int], hw: int, img_rows: int,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """out `[N,C]`, out_da `[N,2K]` and the 0-dim count of out-of-range pixels.

    Same contract as difflod.render.backends.cpu_interpolate.forward, for
    CUDA tensors (CPU tensors under NUMBA_ENABLE_CUDASIM=1).
    """
    dev = attr.device
    n_pix, nc, nk = rast.shape[0], attr.shape[1], len(channels)
    out = torch.empty(n_pix, nc, dtype=attr.dtype, device=dev)
    out_da = torch.empty(n_pix, 2 * nk, dtype=attr.dtype, device=dev)
    bad = torch.zeros(1, dtype=torch.int64, device=dev)
    if n_pix:
        with launch(dev) as run:
            run(_forward_kernel, n_pix,
                _arg(attr, attr), rast, _arg(tris, tris),
                _arg(rast_db if nk else None, attr), _meta_arg(attr, tris, channels, hw, img_rows),
                _arg(out, attr), _arg(out_da, attr), bad)
    return out, out_da, bad[0]


def backward(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
             rast_db: torch.Tensor | None, channels: Sequence[int], hw: int, img_rows: int,
             g_out: torch.Tensor | None, g_da: torch.Tensor | None,
             needs: tuple[bool, bool, bool],
             ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients (attr `[R,C]`, rast `[N,4]`, rast_db `[N,4]`) of forward's outputs.

    Same contract as difflod.render.backends.cpu_interpolate.backward.
    """
    need_attr, need_uv, need_db = needs
    need_db = need_db and rast_db is not None
    dev, dt = attr.device, attr.dtype
    n_pix, rows, nc = rast.shape[0], attr.shape[0], attr.shape[1]
    g_attr = torch.zeros(rows, nc, dtype=dt, device=dev) if need_attr else None
    g_rast = torch.empty(n_pix, 4, dtype=dt, device=dev) if need_uv else None
    g_db = torch.empty(n_pix, 4, dtype=dt, device=dev) if need_db else None
    if n_pix:
        has_da = g_da is not None and len(channels) > 0
        flags = (int(g_out is not None) | int(has_da) << 1 | int(need_attr) << 2
                 | int(need_uv) << 3 | int(need_db) << 4)
        with launch(dev) as run:
            run(_backward_kernel, n_pix,
                _arg(attr, attr), rast, _arg(tris, tris),
                _arg(rast_db if has_da else None, attr),
                _meta_arg(attr, tris, channels, hw, img_rows), _NP_DTYPES[dt](0), flags,
                _arg(g_out, attr), _arg(g_da, attr), _arg(g_attr, attr), _arg(g_rast, attr),
                _arg(g_db, attr))
    return g_attr, g_rast, g_db
