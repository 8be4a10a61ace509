"""CPU (numba) kernels for attribute interpolation, used by interpolate's "cpu" backend.

Why hand-written: the plain-torch path in difflod.render.interpolate (kept as
the reference, backend "torch") gathers three `[N,C]` attribute rows, builds
`[N]` index tensors and runs ~20 elementwise ops per call, plus autograd of
the derivative (out_da) expression and three `index_add_` scatters in
backward. Here one pass per pixel computes out and out_da, and one pass per
pixel computes every gradient (attributes, barycentrics, rast_db).

Measured on the 2-core development machine (bench/render.py's scene: 20k
triangle UV sphere, one 512^2 view, 64% covered; uv with derivatives "all";
interpolate() forward, then forward+backward with random upstream
gradients; medians, both paths back to back in one process). The machine
was shared (load ~6), so these are process CPU times with one thread each
for torch and numba:

    full raster [1,512,512,4]    torch 53 / 137 ms   cpu 6.1 / 17 ms
    compacted [P,1,1,4] (P=167k) torch 34 /  87 ms   cpu 5.1 / 15 ms

(wall-clock with 2 threads under that load: torch 576 / 1536 ms, cpu 24 /
132 ms; too noisy to quote beyond "an order of magnitude").

Determinism: the backward scatter into the attribute gradient is
atomics-free: pixels are split into contiguous chunks, each chunk
accumulates into its own buffer, and the buffers are summed in a fixed order,
so the result only depends on the chunk count (at most numba's thread count).
Arithmetic is done in the tensors' dtype with the reference's operation order
(fastmath off: no FMA contraction), so out and out_da equal the torch
reference bit for bit; gradients agree to rounding (summation order).

Numba compiles each kernel on its first call per dtype (and caches it on
disk); importing this module compiles nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import torch
from numba import prange

from difflod.render.backends.cpu_threads import prefer_openmp

prefer_openmp()

__all__ = ["backward", "forward"]


# ----------------------------------------------------------------------------- kernels

@numba.njit(cache=True, fastmath=False, inline="always")
def _corners(rast, tris, n, hw, img_rows, nv):  # pragma: no cover - numba
    """Attribute rows (i0, i1, i2) of pixel n's triangle, or (-1, 0, 0) when n is empty.

    (-2, 0, 0) when the id or a vertex index is out of range (nv vertices per
    image): such pixels read nothing and are reported, not trusted.
    """
    tid = int(rast[n, 3]) - 1
    if tid < 0:
        return -1, 0, 0
    if tid >= tris.shape[0]:
        return -2, 0, 0
    j0, j1, j2 = tris[tid, 0], tris[tid, 1], tris[tid, 2]
    if min(min(j0, j1), j2) < 0 or max(max(j0, j1), j2) >= nv:
        return -2, 0, 0
    if img_rows == 0:
        return j0, j1, j2
    base = (n // hw) * img_rows
    return base + j0, base + j1, base + j2


@numba.njit(parallel=True, cache=True, fastmath=False)
def _forward(attr, rast, tris, db, channels, hw, img_rows, out, out_da):  # pragma: no cover
    """Fill out and out_da; returns the number of pixels with out-of-range indices."""
    n_pix = rast.shape[0]
    nc = attr.shape[1]
    nk = channels.shape[0]
    nv = img_rows if img_rows > 0 else attr.shape[0]
    bad = 0
    for n in prange(n_pix):
        i0, i1, i2 = _corners(rast, tris, n, hw, img_rows, nv)
        if i0 < 0:
            if i0 == -2:
                bad += 1
            for c in range(nc):
                out[n, c] = 0.0
            for k in range(2 * nk):
                out_da[n, k] = 0.0
        else:
            u = rast[n, 0]
            v = rast[n, 1]
            for c in range(nc):
                a0 = attr[i0, c]
                out[n, c] = a0 + u * (attr[i1, c] - a0) + v * (attr[i2, c] - a0)
            if nk > 0:
                dux, duy, dvx, dvy = db[n, 0], db[n, 1], db[n, 2], db[n, 3]
                for k in range(nk):
                    c = channels[k]
                    a0 = attr[i0, c]
                    d1 = attr[i1, c] - a0
                    d2 = attr[i2, c] - a0
                    out_da[n, 2 * k] = d1 * dux + d2 * dvx
                    out_da[n, 2 * k + 1] = d1 * duy + d2 * dvy
    return bad


@numba.njit(parallel=True, cache=True, fastmath=False)
def _backward(attr, rast, tris, db, channels, hw, img_rows, g_out, g_da,
              need_attr, need_uv, need_db, g_part, g_attr, g_rast, g_db):  # pragma: no cover
    """All gradients in one pass per pixel; g_part `[chunks, rows, C]` holds the attr partials.

    g_out / g_da have zero rows when their output got no gradient. g_attr,
    g_rast and g_db are fully written (where needed).
    """
    n_pix = rast.shape[0]
    nc = attr.shape[1]
    nk = channels.shape[0]
    has_out = g_out.shape[0] > 0
    has_da = g_da.shape[0] > 0 and nk > 0
    nv = img_rows if img_rows > 0 else attr.shape[0]
    n_chunks = g_part.shape[0]
    step = (n_pix + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        gp = g_part[ch]
        if need_attr:
            gp[:, :] = 0.0
        for n in range(ch * step, min(n_pix, (ch + 1) * step)):
            i0, i1, i2 = _corners(rast, tris, n, hw, img_rows, nv)
            if need_uv:
                g_rast[n, 0] = 0.0
                g_rast[n, 1] = 0.0
                g_rast[n, 2] = 0.0
                g_rast[n, 3] = 0.0
            if need_db:
                g_db[n, 0] = 0.0
                g_db[n, 1] = 0.0
                g_db[n, 2] = 0.0
                g_db[n, 3] = 0.0
            if i0 < 0:
                continue
            if has_out:
                u = rast[n, 0]
                v = rast[n, 1]
                gu = 0.0
                gv = 0.0
                for c in range(nc):
                    g = g_out[n, c]
                    if need_attr:
                        g1 = g * u
                        g2 = g * v
                        gp[i0, c] += g - g1 - g2
                        gp[i1, c] += g1
                        gp[i2, c] += g2
                    if need_uv:
                        a0 = attr[i0, c]
                        gu += g * (attr[i1, c] - a0)
                        gv += g * (attr[i2, c] - a0)
                if need_uv:
                    g_rast[n, 0] = gu
                    g_rast[n, 1] = gv
            if has_da:
                dux, duy, dvx, dvy = db[n, 0], db[n, 1], db[n, 2], db[n, 3]
                for k in range(nk):
                    c = channels[k]
                    gx = g_da[n, 2 * k]
                    gy = g_da[n, 2 * k + 1]
                    if need_attr:
                        g1 = gx * dux + gy * duy
                        g2 = gx * dvx + gy * dvy
                        gp[i0, c] -= g1 + g2
                        gp[i1, c] += g1
                        gp[i2, c] += g2
                    if need_db:
                        a0 = attr[i0, c]
                        d1 = attr[i1, c] - a0
                        d2 = attr[i2, c] - a0
                        g_db[n, 0] += gx * d1
                        g_db[n, 1] += gy * d1
                        g_db[n, 2] += gx * d2
                        g_db[n, 3] += gy * d2
    if need_attr:
        rows = g_attr.shape[0]
        for r in prange(rows):
            for c in range(nc):
                s = g_part[0, r, c]
                for ch in range(1, n_chunks):
                    s += g_part[ch, r, c]
                g_attr[r, c] = s


# ----------------------------------------------------------------------------- wrappers

def _view(t: torch.Tensor | None, like: np.ndarray, cols: int) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor; an empty `[0,cols]` array of like's dtype for None."""
    if t is None:
        return np.zeros((0, cols), dtype=like.dtype)
    return t.detach().numpy()


def forward(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
            rast_db: torch.Tensor | None, channels: Sequence[int], hw: int, img_rows: int,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """out `[N,C]`, out_da `[N,2K]` (K = len(channels)) and the count of bad pixels.

    Pixels whose triangle id is above F, or whose triangle has a vertex index
    outside [0, V), read nothing, get 0, and are counted: the caller raises.

    Args:
        attr: `[R,C]` contiguous CPU float attribute rows: the V vertices
            (shared by all images), or B*V rows (image b's vertex i is row b*V + i).
        rast: `[N,4]` contiguous, attr's dtype; N = B*hw pixels, image-major.
        tris: `[F,3]` contiguous int32/int64, indices in [0, V); the raster's
            triangle ids are in [0, F].
        rast_db: `[N,4]` contiguous, attr's dtype, or None when channels is empty.
        channels: attribute channels whose screen derivatives to return.
        hw: pixels per image.
        img_rows: rows of attr per image: 0 when shared, else V.
    Returns:
        (out, out_da, bad): bad is a 0-dim int64 tensor.
    """
    n_pix, nc, nk = rast.shape[0], attr.shape[1], len(channels)
    out = torch.empty(n_pix, nc, dtype=attr.dtype)
    out_da = torch.empty(n_pix, 2 * nk, dtype=attr.dtype)
    bad = 0
    if n_pix:
        a = attr.detach().numpy()
        bad = _forward(a, rast.detach().numpy(), tris.numpy(), _view(rast_db, a, 4),
                 np.asarray(channels, dtype=np.int64), hw, img_rows, out.numpy(), out_da.numpy())
    return out, out_da, torch.tensor(bad, dtype=torch.int64)


def backward(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
             rast_db: torch.Tensor | None, channels: Sequence[int], hw: int, img_rows: int,
             g_out: torch.Tensor | None, g_da: torch.Tensor | None,
             needs: tuple[bool, bool, bool],
             ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients (attr `[R,C]`, rast `[N,4]`, rast_db `[N,4]`) of forward's outputs.

    Args:
        attr, rast, tris, rast_db, channels, hw, img_rows: as in forward.
        g_out: `[N,C]` contiguous gradient of out, or None (no gradient).
        g_da: `[N,2K]` contiguous gradient of out_da, or None.
        needs: which of (attr, rast, rast_db) need a gradient; the others come back None.
    Returns:
        (g_attr, g_rast, g_db); g_rast is 0 in the z/w and id channels.
    """
    need_attr, need_uv, need_db = needs
    need_db = need_db and rast_db is not None
    dt = attr.dtype
    n_pix, rows, nc = rast.shape[0], attr.shape[0], attr.shape[1]
    g_attr = torch.empty(rows if need_attr else 0, nc, dtype=dt)
    g_rast = torch.empty(n_pix if need_uv else 0, 4, dtype=dt)
    g_db = torch.empty(n_pix if need_db else 0, 4, dtype=dt)
    if n_pix == 0:
        g_attr.zero_()
    else:
        a = attr.detach().numpy()
        # one chunk per thread; fewer when the partial buffers would outweigh the pixels
        threads = numba.get_num_threads()
        n_chunks = max(1, min(threads, n_pix // max(rows, 1))) if need_attr else threads
        g_part = np.empty((n_chunks, rows if need_attr else 0, nc), dtype=a.dtype)
        _backward(a, rast.detach().numpy(), tris.numpy(), _view(rast_db, a, 4),
                  np.asarray(channels, dtype=np.int64), hw, img_rows,
                  _view(g_out, a, nc), _view(g_da, a, 2 * len(channels)),
                  need_attr, need_uv, need_db, g_part, g_attr.numpy(), g_rast.numpy(),
                  g_db.numpy())
    return (g_attr if need_attr else None, g_rast if need_uv else None,
            g_db if need_db else None)
