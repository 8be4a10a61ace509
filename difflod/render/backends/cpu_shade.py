"""CPU (numba) kernels of the fused shading op: shade_pixel.py's per-pixel
shading in one parallel loop forward and one backward.

The first call compiles the kernels (about 6 s on a 2-core machine), then
numba caches them on disk. shade_pixel is one function for both passes,
not inlined, and the pass a flag: numba compiles it once (inlined into both
loops it took 16 s to compile and ran forward + backward at 60k pixels in
7.8 ms instead of 10.9).
"""

from __future__ import annotations

import numba
from numba import prange

from difflod.render.backends.cpu_threads import prefer_openmp
from difflod.render.backends.shade_pixel import shade_pixel

prefer_openmp()

__all__ = ["backward", "forward"]


@numba.njit(parallel=True, cache=True, fastmath=False)
def _forward(pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l, per_p,
             flags, min_roughness, normal_scale, out):  # pragma: no cover - numba
    for n in prange(pos.shape[0]):
        out[n, 0], out[n, 1], out[n, 2] = shade_pixel(
            n, pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l, per_p,
            flags & 7, min_roughness, normal_scale, out, out, out, out, out, out, out, out)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _backward(pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l, per_p,
              flags, min_roughness, normal_scale, grad, g_pos, g_geom, g_smooth, g_tangent,
              g_kd, g_arm, g_nmap):  # pragma: no cover - numba
    for n in prange(pos.shape[0]):
        shade_pixel(n, pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v,
                    per_l, per_p, flags | 8, min_roughness, normal_scale, grad, g_pos, g_geom,
                    g_smooth, g_tangent, g_kd, g_arm, g_nmap)


# ----------------------------------------------------------------------------- launchers

def _np(t):
    return t.detach().numpy()


def forward(inputs: tuple, rows: tuple, flags: int, min_roughness: float,
            normal_scale: float, out):
    """Fill out `[N,3]` with the colours. inputs: (pos, geom, smooth, tangent, kd, arm,
    nmap, ke, view_pos, light_pos, power) as flat contiguous CPU tensors of one
    dtype (stand-ins where absent, see flags); rows: (per_v, per_l, per_p)."""
    _forward(*(_np(t) for t in inputs), *rows, flags, min_roughness, normal_scale, _np(out))


def backward(inputs: tuple, rows: tuple, flags: int, min_roughness: float,
             normal_scale: float, grad, grads: tuple) -> None:
    """Write the gradients of (pos, geom, smooth, tangent, kd, arm, nmap) under grad
    `[N,3]` into `grads` (seven `[N,C]` tensors, fully overwritten; tangent and
    nmap's only where flags say they are used)."""
    _backward(*(_np(t) for t in inputs), *rows, flags, min_roughness, normal_scale, _np(grad),
              *(_np(g) for g in grads))
