"""GPU (numba-cuda) kernels for attribute interpolation, used by interpolate's "cuda" backend.

Why hand-written: the plain-torch path in difflod.render.interpolate (kept as
the reference, backend "torch") launches ~25 small kernels forward (index
arithmetic, three `[N,C]` gathers, elementwise products, the derivative
expression) and ~30 backward (autograd of out_da, three `index_add_`
scatters), each a full pass over the pixels. Here one thread per pixel does
out and out_da in one launch, and one thread per pixel does every gradient
in one launch: barycentric and rast_db gradients are per pixel, the
attribute gradient is scattered with `cuda.atomic.add` (so its summation
order, and its last bits, vary from run to run). Neighbouring pixels mostly
lie on one triangle, and atomics on one address serialise, so in a full warp
each run of lanes on one triangle first sums its values with shuffles and
its first lane adds once (the simulator, which has no shuffles, adds per
lane). On an H100 (spot.json's step: 4 calls over 8 x 512^2 pixels) the
backward went from 0.85 ms a step to 0.20.

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

from difflod.render.backends.cuda_launch import SIM, available, cuda, launch

__all__ = ["available", "backward", "forward"]

_FULL = 0xFFFFFFFF  # every lane of a warp

if cuda is not None and SIM:

    @cuda.jit(device=True)
    def _full_warp(n, total):  # pragma: no cover - simulator only
        return False  # the simulator has no warp shuffles: per-lane atomics

    @cuda.jit(device=True)
    def _run_head(key):  # pragma: no cover - simulator only
        return 0

    @cuda.jit(device=True)
    def _run_sum(val, head):  # pragma: no cover - simulator only
        return val

elif cuda is not None:  # pragma: no cover - needs a GPU

    @cuda.jit(device=True)
    def _full_warp(n, total):
        """True when all 32 lanes of thread n's warp have a pixel (none returned
        early), so every lane runs the same shuffles (blocks are whole warps)."""
        return n - cuda.laneid + 32 <= total

    @cuda.jit(device=True)
    def _run_head(key):
        """The first lane of this lane's run of equal keys (a full warp): a max-scan
        of the lanes where the key changes."""
        lane = cuda.laneid
        prev = cuda.shfl_up_sync(_FULL, key, 1)
        head = lane if (lane == 0 or prev != key) else 0
        off = 1
        while off < 32:
            other = cuda.shfl_up_sync(_FULL, head, off)
            if lane >= off and other > head:
                head = other
            off *= 2
        return head

    @cuda.jit(device=True)
    def _run_sum(val, head):
        """val summed from this lane to the end of its run (the whole run's sum at
        the run's head): runs are contiguous, so a suffix scan that adds only
        partners of the same run is exact."""
        lane = cuda.laneid
        off = 1
        while off < 32:
            other = cuda.shfl_down_sync(_FULL, val, off)
            other_head = cuda.shfl_down_sync(_FULL, head, off)
            if lane + off < 32 and other_head == head:
                val += other
            off *= 2
        return val

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

    @cuda.jit(cache=True)
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

    @cuda.jit(device=True)
    def _add3(g_attr, i0, i1, i2, c, v0, v1, v2, warp, head, lead, covered):  # pragma: no cover
        """g_attr[i0..i2, c] += v0..v2 atomically. In a full warp each run of lanes
        on one triangle sums its values with shuffles and its first lane adds once:
        neighbouring pixels share triangles, and up to 32 atomics on one address
        serialise."""
        if warp:
            v0 = _run_sum(v0, head)
            v1 = _run_sum(v1, head)
            v2 = _run_sum(v2, head)
            if lead:
                cuda.atomic.add(g_attr, (i0, c), v0)
                cuda.atomic.add(g_attr, (i1, c), v1)
                cuda.atomic.add(g_attr, (i2, c), v2)
        elif covered:
            cuda.atomic.add(g_attr, (i0, c), v0)
            cuda.atomic.add(g_attr, (i1, c), v1)
            cuda.atomic.add(g_attr, (i2, c), v2)

    @cuda.jit(cache=True)
    def _backward_kernel(attr, rast, tris, db, meta, zero, flags, g_out, g_da,
                         g_attr, g_rast, g_db):  # pragma: no cover - numba
        """flags: 1 g_out given, 2 g_da given, 4 attr, 8 rast, 16 rast_db gradients wanted.

        The attribute gradients of a full warp go through _add3's per-run sums;
        every lane then runs the channel loops (zero values where its pixel is
        empty), so the shuffles see all 32 lanes.
        """
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
        covered = i0 >= 0
        warp = need_attr and _full_warp(n, rast.shape[0])
        head = 0
        lead = False
        if warp:
            # the triangle and, where each image has its own attribute rows, the image
            img = n // hw if img_rows > 0 else 0
            key = img * nf + int(rast[n, 3]) - 1 if covered else -1
            head = _run_head(key)
            lead = covered and cuda.laneid == head
        gu = zero
        gv = zero
        gdb0 = zero
        gdb1 = zero
        gdb2 = zero
        gdb3 = zero
        if has_out and (covered or warp):
            u = rast[n, 0]
            v = rast[n, 1]
            for c in range(nc):
                g = g_out[n, c] if covered else zero
                if need_attr:
                    g1 = g * u
                    g2 = g * v
                    _add3(g_attr, i0, i1, i2, c, g - g1 - g2, g1, g2, warp, head, lead, covered)
                if need_uv and covered:
                    a0 = attr[i0, c]
                    gu += g * (attr[i1, c] - a0)
                    gv += g * (attr[i2, c] - a0)
        if has_da and (covered or warp):
            dux, duy, dvx, dvy = db[n, 0], db[n, 1], db[n, 2], db[n, 3]
            for k in range(nk):
                c = meta[6 + k]
                gx = g_da[n, 2 * k] if covered else zero
                gy = g_da[n, 2 * k + 1] if covered else zero
                if need_attr:
                    g1 = gx * dux + gy * duy
                    g2 = gx * dvx + gy * dvy
                    _add3(g_attr, i0, i1, i2, c, -(g1 + g2), g1, g2, warp, head, lead, covered)
                if need_db and covered:
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
