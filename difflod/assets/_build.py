"""Vectorized mesh builders shared by the assets: surfaces of revolution and tubes.

All index buffers are built with numpy broadcasting (no per-vertex Python
loops), so a million triangles take well under a second. Winding is counter-
clockwise seen from outside; UV seams are split in the UV index buffer only,
positions stay shared, so closed surfaces stay watertight.

UV layout of a surface of revolution: u = angle / 2pi around +Y (increasing so
that the texture is not mirrored seen from outside), v = 0 at the top pole
(first texture row, glTF convention) growing downward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

Profile = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def lathe_rows(bands: Sequence[tuple[Profile, float]], segments: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample the profile bands bottom to top into `segments` row intervals.

    bands: (profile, length) pairs; profile(s) maps s in [0,1] to (r, y) arrays;
        consecutive bands meet; the first starts and the last ends on the axis
        (r = 0). Segments are shared out in proportion to `length` (>= 1 each).
    Returns r `[segments+1]`, y `[segments+1]`, s `[segments+1]` (the position in
    its band, in [0,1]) and band `[segments]` int64 (the band of each interval).
    """
    lengths = np.array([max(length, 1e-9) for _, length in bands])
    counts = np.maximum(1, np.round(lengths / lengths.sum() * segments).astype(np.int64))
    counts[np.argmax(counts)] += segments - counts.sum()  # exact total
    rs, ys, ss, band = [], [], [], []
    for b, ((profile, _), n) in enumerate(zip(bands, counts)):
        s = np.linspace(0.0, 1.0, int(n) + 1)
        if b > 0:
            s = s[1:]
        r, y = profile(s)
        rs.append(r)
        ys.append(y)
        ss.append(s)
        band.append(np.full(int(n), b, dtype=np.int64))
    r, y = np.concatenate(rs), np.concatenate(ys)
    r[0] = r[-1] = 0.0
    return r, y, np.concatenate(ss), np.concatenate(band)


def lathe(r: np.ndarray, y: np.ndarray, around: int, band: np.ndarray | None = None,
          band_v: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Revolve a profile around +Y into a closed surface.

    r, y: `[R]` profile rows from the bottom pole (r[0] = 0) to the top pole
        (r[-1] = 0); every inner row must have r > 0. around: columns (>= 3).
    band: `[R-1]` int64 band per row interval (None: one band). band_v: `[R,2]`
        v of each row as seen from the interval below (col 0) and above (col 1);
        rows where the two differ get their own UV row, so each band can use
        its own part of (or all of) the texture. None: v by arc length.
    Returns numpy arrays: pos `[V,3]`, tri `[F,3]`, uv `[T,2]`, tri_uv `[F,3]`,
    tri_band `[F]`, ring `[F]` (row interval of each triangle), with
    F = 2 * around * (R - 2).
    """
    rows = r.shape[0]
    nseg = rows - 1
    if band is None:
        band = np.zeros(nseg, dtype=np.int64)
    if band_v is None:
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(r), np.diff(y)))])
        v = 1.0 - arc / arc[-1]
        band_v = np.stack([v, v], axis=1)
    phi = np.arange(around) * (2.0 * math.pi / around)
    inner = np.arange(1, rows - 1)
    ring_y = np.broadcast_to(y[inner, None], (len(inner), around))
    ring = np.stack([r[inner, None] * np.cos(phi), ring_y, -r[inner, None] * np.sin(phi)],
                    axis=-1).reshape(-1, 3)
    pos = np.concatenate([[[0.0, y[0], 0.0]], ring, [[0.0, y[-1], 0.0]]])
    top = pos.shape[0] - 1

    def p_idx(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        # Row i, column j (wrapping); poles are single vertices.
        idx = 1 + (i - 1) * around + j % around
        return np.where(i == 0, 0, np.where(i == rows - 1, top, idx))

    # UV rows: one per (row, side) where v differs between the two sides.
    split = band_v[:, 0] != band_v[:, 1]
    uv_row_below = np.cumsum(1 + split) - 1 - split      # row as top of the interval below
    uv_row_above = uv_row_below + split                  # row as bottom of the interval above
    n_uv_rows = int(uv_row_above[-1]) + 1
    row_v = np.empty(n_uv_rows)
    row_v[uv_row_below] = band_v[:, 0]
    row_v[uv_row_above] = band_v[:, 1]
    u = np.arange(around + 1) / around
    uv = np.stack([np.broadcast_to(u, (n_uv_rows, around + 1)),
                   np.broadcast_to(row_v[:, None], (n_uv_rows, around + 1))], axis=-1)
    uv = uv.reshape(-1, 2).copy()
    # Pole texels: the pole rows' u is the interval's center, so the cap is not twisted.
    pole_u = (np.arange(around) + 0.5) / around
    uv_bottom = uv.shape[0] + np.arange(around)
    uv_top = uv_bottom + around
    uv = np.concatenate([uv, np.stack([pole_u, np.full(around, row_v[uv_row_above[0]])], 1),
                         np.stack([pole_u, np.full(around, row_v[uv_row_below[-1]])], 1)])

    seg = np.arange(nseg)[:, None]
    j = np.arange(around)[None, :]
    a, b = p_idx(seg, j), p_idx(seg + 1, j)
    c, d = p_idx(seg, j + 1), p_idx(seg + 1, j + 1)
    ua = uv_row_above[seg] * (around + 1) + j          # row `seg`, as bottom of interval seg
    ub = uv_row_below[seg + 1] * (around + 1) + j      # row `seg+1`, as top of interval seg
    uc, ud = ua + 1, ub + 1
    uc = np.where(seg == 0, uv_bottom[j], uc)
    ub = np.where(seg + 1 == rows - 1, uv_top[j], ub)
    # Quad (a,b,c,d) -> (a,c,b) + (b,c,d), CCW from outside; at the poles one
    # of the two is degenerate and dropped.
    t1 = np.stack([a, c, b], -1)
    t2 = np.stack([b, c, d], -1)
    u1 = np.stack([ua, uc, ub], -1)
    u2 = np.stack([ub, uc, ud], -1)
    keep1 = np.broadcast_to(seg > 0, (nseg, around))
    keep2 = np.broadcast_to(seg < nseg - 1, (nseg, around))
    tri = np.concatenate([t1[keep1], t2[keep2]])
    tri_uv = np.concatenate([u1[keep1], u2[keep2]])
    seg_f = np.concatenate([np.broadcast_to(seg, (nseg, around))[keep1],
                            np.broadcast_to(seg, (nseg, around))[keep2]])
    order = np.argsort(seg_f, kind="stable")  # rows bottom to top: better locality
    tri, tri_uv, seg_f = tri[order], tri_uv[order], seg_f[order]
    return {"pos": pos, "tri": tri, "uv": uv, "tri_uv": tri_uv, "tri_band": band[seg_f],
            "ring": seg_f}


def torus_grid(along: int, around: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index buffers of a grid wrapped in both directions (a closed tube).

    Positions are laid out `[along, around]` (index i*around + j); UVs
    `[along+1, around+1]` with u = i/along, v = j/around. The tube's outward
    direction must make (d/d around) x (d/d along) point outside.
    Returns (tri `[F,3]`, uv `[T,2]`, tri_uv `[F,3]`, i_of_tri `[F]`), F = 2*along*around.
    """
    i = np.arange(along)[:, None]
    j = np.arange(around)[None, :]
    a = i * around + j
    b = ((i + 1) % along) * around + j
    c = i * around + (j + 1) % around
    d = ((i + 1) % along) * around + (j + 1) % around
    ua = i * (around + 1) + j
    ub, uc = ua + around + 1, ua + 1
    ud = ub + 1
    tri = np.stack([np.stack([a, c, b], -1), np.stack([b, c, d], -1)], 2).reshape(-1, 3)
    tri_uv = np.stack([np.stack([ua, uc, ub], -1), np.stack([ub, uc, ud], -1)], 2).reshape(-1, 3)
    uu, vv = np.meshgrid(np.arange(along + 1) / along, np.arange(around + 1) / around,
                         indexing="ij")
    uv = np.stack([uu, vv], -1).reshape(-1, 2)
    i_of_tri = np.broadcast_to(i[:, :, None], (along, around, 2)).reshape(-1)
    return tri, uv, tri_uv, i_of_tri


def lathe_size(triangles: int, aspect: float) -> tuple[int, int]:
    """(row intervals, columns) for a lathe of about `triangles` triangles.

    aspect: columns per row interval. F = 2 * columns * (intervals - 1).
    """
    inner = max(1, round(math.sqrt(triangles / (2.0 * aspect))))
    around = max(3, round(triangles / (2.0 * inner)))
    return inner + 1, around


def to_t(a: np.ndarray) -> torch.Tensor:
    """A contiguous float32 torch tensor from a numpy array."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def to_i(a: np.ndarray) -> torch.Tensor:
    """A contiguous int64 torch tensor from a numpy array."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def fit_unit(pos: np.ndarray, extent: float = 0.95) -> np.ndarray:
    """Center `[V,3]` positions on their bounding box and scale the largest
    half-extent to `extent` (so the model lies inside [-1,1]^3)."""
    lo, hi = pos.min(0), pos.max(0)
    center = (lo + hi) * 0.5
    return (pos - center) * (extent / max(float((hi - lo).max()) * 0.5, 1e-12))
