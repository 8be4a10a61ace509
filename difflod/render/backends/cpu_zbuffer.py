"""numba kernels of the CPU rasterizer (see backends/cpu.py for the layout and timings).

All float64 arithmetic with fastmath off: the triangle ids agree bit for bit
with torch_ref.py (the same operations in the same order). Every kernel that
calls another one sits in this file, so numba's on-disk cache (which only
watches the caller's file) never runs a stale copy; cpu.py and cpu_raster.py
call them from Python. Each kernel compiles on first use.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from difflod.render.backends.cpu_threads import prefer_openmp

prefer_openmp()

__all__ = ["BAND", "REC_LEN", "bin_bands", "pixels", "planes", "raster", "setup"]

BAND = 16  # rows per parallel task
# per-triangle float64 record written by setup: edge i's (a, b, c) at 3i..3i+2,
# depth plane N at 9..11, det at 12, then the span bound of edge i at 13+2i, 14+2i
_T_DEPTH, _T_DET, _T_SPAN = 9, 12, 13
REC_LEN = 19


@numba.njit(cache=True, fastmath=False, inline="always")
def _clampi(v: float, lo: int, hi: int) -> int:
    if v < lo:
        return lo
    if v > hi:
        return hi
    return int(v)


@numba.njit(cache=True, fastmath=False, inline="always")
def _first_pixel(v: float, n: int) -> int:
    """First pixel (of n) whose centre can lie at or after pixel coordinate v.

    The margin (1e-6 pixel, more for far coordinates) is far above the rounding
    error of v and of the exact edge test, so no covered pixel is left out.
    """
    return _clampi(np.ceil(v - (1e-6 + 1e-12 * (abs(v) + n))), 0, n)


@numba.njit(cache=True, fastmath=False, inline="always")
def _last_pixel(v: float, n: int) -> int:
    """Last pixel (of n) whose centre can lie at or before pixel coordinate v (see _first_pixel)."""
    return _clampi(np.floor(v + (1e-6 + 1e-12 * (abs(v) + n))), -1, n - 1)


@numba.njit(cache=True, fastmath=False, inline="always")
def _corners(clip, tris, b, f):  # pragma: no cover - numba
    """(x, y, z, w) of the three vertices of triangle f in image b, in float64."""
    i0, i1, i2 = tris[f, 0], tris[f, 1], tris[f, 2]
    return (np.float64(clip[b, i0, 0]), np.float64(clip[b, i0, 1]),
            np.float64(clip[b, i0, 2]), np.float64(clip[b, i0, 3]),
            np.float64(clip[b, i1, 0]), np.float64(clip[b, i1, 1]),
            np.float64(clip[b, i1, 2]), np.float64(clip[b, i1, 3]),
            np.float64(clip[b, i2, 0]), np.float64(clip[b, i2, 1]),
            np.float64(clip[b, i2, 2]), np.float64(clip[b, i2, 3]))


@numba.njit(cache=True, fastmath=False, inline="always")
def _edge(ax, ay, aw, bx, by, bw):  # pragma: no cover - numba
    """Edge a->b as torch_ref: canonical-order cross product (x, y, w) and the order's sign."""
    j_first = (ax < bx) or (ax == bx and ((ay < by) or (ay == by and aw <= bw)))
    if j_first:
        lx, ly, lw, hx, hy, hw = ax, ay, aw, bx, by, bw
        s = 1.0
    else:
        lx, ly, lw, hx, hy, hw = bx, by, bw, ax, ay, aw
        s = -1.0
    return (ly * hw - lw * hy) * s, (lw * hx - lx * hw) * s, (lx * hy - ly * hx) * s, s


@numba.njit(cache=True, fastmath=False, inline="always")
def _store_edge(rec, bi, f, i, ex, ey, ez, sgn, w):  # pragma: no cover - numba
    """Edge i's coefficients (a, b, c), oriented by sgn, and its span bound into rec[bi, f].

    On the row at NDC height py, the edge crosses x = K + L * py (pixel units). A
    left edge (a > 0) bounds a row's span from below by ceil(K - m + L py), a right
    edge (a < 0) from above by floor(K + m + L py) (see _span). The margin m is far
    above the rounding error of K + L py and of the exact test (relative to the
    size of the terms, 1e-12 * w, plus 1e-6 pixel), so the span holds every pixel
    the exact test accepts. An edge with a = 0 narrows nothing (the exact test
    rejects its rows).
    """
    a, b, c = ex * sgn, ey * sgn, ez * sgn
    rec[bi, f, 3 * i], rec[bi, f, 3 * i + 1], rec[bi, f, 3 * i + 2] = a, b, c
    k, slope = 0.0, 0.0
    if a != 0.0:
        inv = 1.0 / a
        m = (abs(b) + abs(c)) * abs(inv) * (1e-12 * w) + 1e-6
        k = ((-c * inv) + 1.0) * (0.5 * w) - 0.5 + (-m if a > 0.0 else m)
        slope = (-b * inv) * (0.5 * w)
    rec[bi, f, _T_SPAN + 2 * i], rec[bi, f, _T_SPAN + 2 * i + 1] = k, slope


@numba.njit(cache=True, fastmath=False, inline="always")
def _store_box(box, b, f, x0, x1, y0, y1):  # pragma: no cover - numba
    box[b, f, 0], box[b, f, 1], box[b, f, 2], box[b, f, 3] = x0, x1, y0, y1


@numba.njit(parallel=True, cache=True, fastmath=False)
def setup(clip, tris, h, w, rec, incl, box):  # pragma: no cover - numba
    """Per (image, triangle): rec `[B,F,REC_LEN]`, fill rule incl `[B,F,3]`, pixel box `[B,F,4]`."""
    n_b = clip.shape[0]
    n_f = tris.shape[0]
    for t in prange(n_b * n_f):
        b = t // n_f
        f = t - b * n_f
        x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2 = _corners(clip, tris, b, f)
        e0x, e0y, e0z, s0 = _edge(x1, y1, w1, x2, y2, w2)
        e1x, e1y, e1z, s1 = _edge(x2, y2, w2, x0, y0, w0)
        e2x, e2y, e2z, s2 = _edge(x0, y0, w0, x1, y1, w1)
        d = (x0 * e0x + y0 * e0y) + w0 * e0z
        if d == 0.0:
            _store_box(box, b, f, 1, 0, 1, 0)
            continue
        sgn = 1.0 if d > 0.0 else -1.0
        _store_edge(rec, b, f, 0, e0x, e0y, e0z, sgn, w)
        _store_edge(rec, b, f, 1, e1x, e1y, e1z, sgn, w)
        _store_edge(rec, b, f, 2, e2x, e2y, e2z, sgn, w)
        incl[b, f, 0], incl[b, f, 1], incl[b, f, 2] = s0 * sgn > 0.0, s1 * sgn > 0.0, s2 * sgn > 0.0
        rec[b, f, _T_DEPTH] = (z0 * e0x + z1 * e1x) + z2 * e2x
        rec[b, f, _T_DEPTH + 1] = (z0 * e0y + z1 * e1y) + z2 * e2y
        rec[b, f, _T_DEPTH + 2] = (z0 * e0z + z1 * e1z) + z2 * e2z
        rec[b, f, _T_DET] = d
        if w0 > 0.0 and w1 > 0.0 and w2 > 0.0:
            # projected pixel coordinates
            px0, py0 = (x0 / w0 + 1.0) * (0.5 * w) - 0.5, (y0 / w0 + 1.0) * (0.5 * h) - 0.5
            px1, py1 = (x1 / w1 + 1.0) * (0.5 * w) - 0.5, (y1 / w1 + 1.0) * (0.5 * h) - 0.5
            px2, py2 = (x2 / w2 + 1.0) * (0.5 * w) - 0.5, (y2 / w2 + 1.0) * (0.5 * h) - 0.5
            _store_box(
                box,
                b,
                f,
                _first_pixel(min(px0, px1, px2), w),
                _last_pixel(max(px0, px1, px2), w),
                _first_pixel(min(py0, py1, py2), h),
                _last_pixel(max(py0, py1, py2), h),
            )
        else:
            _store_box(box, b, f, 0, w - 1, 0, h - 1)


@numba.njit(parallel=True, cache=True, fastmath=False)
def bin_bands(box, h):  # pragma: no cover - numba
    """Triangles per band of BAND rows: items[starts[g]:starts[g+1]] for band g = b*nb + k,
    in triangle id order. Each image fills only its own bands, so images run in parallel."""
    n_b, n_f = box.shape[0], box.shape[1]
    nb = (h + BAND - 1) // BAND
    starts = np.zeros(n_b * nb + 1, np.int64)
    for b in prange(n_b):
        for f in range(n_f):
            y0, y1 = box[b, f, 2], box[b, f, 3]
            if box[b, f, 0] > box[b, f, 1] or y0 > y1:
                continue
            for k in range(y0 // BAND, y1 // BAND + 1):
                starts[b * nb + k + 1] += 1
    for g in range(n_b * nb):
        starts[g + 1] += starts[g]
    items = np.empty(starts[-1], np.int32)
    pos = starts[:-1].copy()
    for b in prange(n_b):
        for f in range(n_f):
            y0, y1 = box[b, f, 2], box[b, f, 3]
            if box[b, f, 0] > box[b, f, 1] or y0 > y1:
                continue
            for k in range(y0 // BAND, y1 // BAND + 1):
                g = b * nb + k
                items[pos[g]] = f
                pos[g] += 1
    return starts, items


@numba.njit(cache=True, fastmath=False, inline="always")
def _span(rec, b, f, a0, a1, a2, py, x0, x1):  # pragma: no cover - numba
    """[xs, xe]: the pixels of the row at py that can be inside triangle f (see _store_edge).

    Branch-free: each edge's bound is computed, then kept or replaced by -inf / +inf
    by the sign of its a, which only selects.
    """
    j = _T_SPAN
    x_0 = rec[b, f, j] + rec[b, f, j + 1] * py
    x_1 = rec[b, f, j + 2] + rec[b, f, j + 3] * py
    x_2 = rec[b, f, j + 4] + rec[b, f, j + 5] * py
    xs = max(
        x0,
        np.ceil(x_0) if a0 > 0.0 else -np.inf,
        np.ceil(x_1) if a1 > 0.0 else -np.inf,
        np.ceil(x_2) if a2 > 0.0 else -np.inf,
    )
    xe = min(
        x1,
        np.floor(x_0) if a0 < 0.0 else np.inf,
        np.floor(x_1) if a1 < 0.0 else np.inf,
        np.floor(x_2) if a2 < 0.0 else np.inf,
    )
    return int(min(xs, x1 + 1.0)), int(max(xe, x0 - 1.0))


@numba.njit(cache=True, fastmath=False, inline="always")
def _zbuffer_band(
    rec, incl, box, items, i_start, i_end, b, r0, r1, w, pxs, pys, floor, use_floor, zb, win
):  # pragma: no cover - numba
    """Depth test of the band's triangles items[i_start:i_end] over rows r0..r1.

    zb `[rows,W]` float32 (inf) and win `[rows,W]` int32 (0) are the band's depth and
    winner (its position in the band's items + 1). The items are in id order, so a
    later triangle wins only with a strictly smaller depth: ties keep the smaller id,
    as in the oracle (whose -0 -> +0 needs no code here: -0 and +0 compare equal).
    """
    for it in range(i_start, i_end):
        f = items[it]
        a0, b0, c0 = rec[b, f, 0], rec[b, f, 1], rec[b, f, 2]
        a1, b1, c1 = rec[b, f, 3], rec[b, f, 4], rec[b, f, 5]
        a2, b2, c2 = rec[b, f, 6], rec[b, f, 7], rec[b, f, 8]
        n0, n1, n2 = rec[b, f, _T_DEPTH], rec[b, f, _T_DEPTH + 1], rec[b, f, _T_DEPTH + 2]
        dt = rec[b, f, _T_DET]
        in0, in1, in2 = incl[b, f, 0], incl[b, f, 1], incl[b, f, 2]
        x0, x1 = np.float64(box[b, f, 0]), np.float64(box[b, f, 1])
        for y in range(max(r0, box[b, f, 2]), min(r1, box[b, f, 3]) + 1):
            py = pys[y]
            xs, xe = _span(rec, b, f, a0, a1, a2, py, x0, x1)
            b0py, b1py, b2py, n1py = b0 * py, b1 * py, b2 * py, n1 * py
            ry = y - r0
            for x in range(xs, xe + 1):
                px = pxs[x]
                v0 = (a0 * px + b0py) + c0
                if not (v0 > 0.0 or (v0 == 0.0 and in0)):
                    continue
                v1 = (a1 * px + b1py) + c1
                if not (v1 > 0.0 or (v1 == 0.0 and in1)):
                    continue
                v2 = (a2 * px + b2py) + c2
                if not (v2 > 0.0 or (v2 == 0.0 and in2)):
                    continue
                d = ((n0 * px + n1py) + n2) / dt
                if d < -1.0 or d > 1.0:
                    continue
                d32 = np.float32(d)
                if use_floor and not (d32 > floor[b, y, x]):
                    continue
                if d32 < zb[ry, x]:
                    zb[ry, x] = d32
                    win[ry, x] = it - i_start + 1


# ----------------------------------------------------------------------------- barycentrics


@numba.njit(cache=True, fastmath=False, inline="always")
def _pixel_centers(h, w):  # pragma: no cover - numba
    """NDC pixel centres px `[W]`, py `[H]` float64: (2x+1)/W - 1, as torch_ref.pixel_centers."""
    pxs = np.empty(w)
    for x in range(w):
        pxs[x] = (2.0 * x + 1.0) / w - 1.0
    pys = np.empty(h)
    for y in range(h):
        pys[y] = (2.0 * y + 1.0) / h - 1.0
    return pxs, pys


@numba.njit(cache=True, fastmath=False, inline="always")
def _plane_row(clip, tris, b, f, table, k):  # pragma: no cover - numba
    """table[k] = (E1, E2, E0+E1+E2, sum z_i E_i, sum w_i E_i) of triangle f in image b.

    E_i = V_j x V_k with V = (x, y, w) in float64, (j, k) = (i+1, i+2) mod 3.
    """
    x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2 = _corners(clip, tris, b, f)
    e0x, e0y, e0w = y1 * w2 - w1 * y2, w1 * x2 - x1 * w2, x1 * y2 - y1 * x2
    e1x, e1y, e1w = y2 * w0 - w2 * y0, w2 * x0 - x2 * w0, x2 * y0 - y2 * x0
    e2x, e2y, e2w = y0 * w1 - w0 * y1, w0 * x1 - x0 * w1, x0 * y1 - y0 * x1
    table[k, 0], table[k, 1], table[k, 2] = e1x, e1y, e1w
    table[k, 3], table[k, 4], table[k, 5] = e2x, e2y, e2w
    table[k, 6] = e0x + e1x + e2x
    table[k, 7] = e0y + e1y + e2y
    table[k, 8] = e0w + e1w + e2w
    table[k, 9] = e0x * z0 + e1x * z1 + e2x * z2
    table[k, 10] = e0y * z0 + e1y * z1 + e2y * z2
    table[k, 11] = e0w * z0 + e1w * z1 + e2w * z2
    table[k, 12] = e0x * w0 + e1x * w1 + e2x * w2
    table[k, 13] = e0y * w0 + e1y * w1 + e2y * w2
    table[k, 14] = e0w * w0 + e1w * w1 + e2w * w2


@numba.njit(cache=True, fastmath=False, inline="always")
def _dot(table, k, i, px, py):  # pragma: no cover - numba
    """Plane i of table row k at p = (px, py, 1)."""
    return table[k, 3 * i] * px + table[k, 3 * i + 1] * py + table[k, 3 * i + 2]


@numba.njit(cache=True, fastmath=False, inline="always")
def _bary_pixel(table, k, t, b, y, x, px, py, cx, cy, with_db, rast, rast_db):  # pragma: no cover
    """rast[b, y, x] = (u, v, z/w, t) and rast_db[b, y, x] from table row k (triangle id t).

    (px, py): the pixel centre in NDC; (cx, cy) = (2/W, 2/H). Divides once by s
    (then multiplies): 2 divisions per pixel instead of 7, the slowest
    instructions here; each result moves by about one float64 rounding.
    """
    e1 = _dot(table, k, 0, px, py)
    e2 = _dot(table, k, 1, px, py)
    r = 1.0 / _dot(table, k, 2, px, py)
    rast[b, y, x, 0] = e1 * r
    rast[b, y, x, 1] = e2 * r
    rast[b, y, x, 2] = _dot(table, k, 3, px, py) / _dot(table, k, 4, px, py)
    rast[b, y, x, 3] = t
    if with_db:
        # d(e_i/s)/dp = (E_i s - e_i S) / s^2 = (E_i - (e_i/s) S) / s; dp/dX = 2/W, dp/dY = 2/H
        u, v = e1 * r, e2 * r
        rx, ry = r * cx, r * cy
        rast_db[b, y, x, 0] = (table[k, 0] - u * table[k, 6]) * rx
        rast_db[b, y, x, 1] = (table[k, 1] - u * table[k, 7]) * ry
        rast_db[b, y, x, 2] = (table[k, 3] - v * table[k, 6]) * rx
        rast_db[b, y, x, 3] = (table[k, 4] - v * table[k, 7]) * ry


@numba.njit(cache=True, fastmath=False, inline="always")
def _empty_pixel(b, y, x, with_db, rast, rast_db):  # pragma: no cover - numba
    """Zeros at an uncovered pixel (the outputs are allocated without zeroing)."""
    for c in range(4):
        rast[b, y, x, c] = 0.0
    if with_db:
        for c in range(4):
            rast_db[b, y, x, c] = 0.0


@numba.njit(parallel=True, cache=True, fastmath=False)
def planes(clip, tris, pairs, n_f, table):  # pragma: no cover - numba
    """table `[T,15]`: the planes (see _plane_row) of each pair b*F + f in pairs `[T]`."""
    for k in prange(pairs.shape[0]):
        b = pairs[k] // n_f
        _plane_row(clip, tris, b, pairs[k] - b * n_f, table, k)


@numba.njit(parallel=True, cache=True, fastmath=False)
def pixels(tri_id, slot, table, n_f, with_db, rast, rast_db):  # pragma: no cover - numba
    """Fill every pixel of rast `[B,H,W,4]` (and rast_db when with_db) from the ids `[B,H,W]`;
    slot[b*F + f] is the table row of triangle f in image b."""
    n_b, h, w = tri_id.shape
    pxs, pys = _pixel_centers(h, w)
    for r in prange(n_b * h):
        b = r // h
        y = r - b * h
        for x in range(w):
            t = tri_id[b, y, x]
            if t <= 0:
                _empty_pixel(b, y, x, with_db, rast, rast_db)
            else:
                k = slot[b * n_f + t - 1]
                _bary_pixel(
                    table, k, t, b, y, x, pxs[x], pys[y], 2.0 / w, 2.0 / h, with_db, rast, rast_db
                )


# ----------------------------------------------------------------------------- one pass


@numba.njit(parallel=True, cache=True, fastmath=False)
def raster(  # pragma: no cover - numba
    rec,
    incl,
    box,
    starts,
    items,
    h,
    w,
    floor,
    use_floor,
    clip,
    tris,
    with_bary,
    with_db,
    ids,
    rast,
    rast_db,
):
    """Fill ids `[B,H,W]` int32 (triangle id + 1, 0 = empty), one parallel task per band.

    With with_bary, every pixel of rast / rast_db is written too, from clip (any float
    dtype) while the band is still in cache: the planes of each winning triangle are
    built once per band, in a table indexed by its position in the band's items.
    """
    n_b = rec.shape[0]
    nb = (h + BAND - 1) // BAND
    pxs, pys = _pixel_centers(h, w)
    for g in prange(n_b * nb):
        b = g // nb
        r0 = (g - b * nb) * BAND
        r1 = min(h, r0 + BAND) - 1
        i0, i1 = starts[g], starts[g + 1]
        zb = np.full((r1 - r0 + 1, w), np.inf, np.float32)
        win = np.zeros((r1 - r0 + 1, w), np.int32)
        _zbuffer_band(
            rec, incl, box, items, i0, i1, b, r0, r1, w, pxs, pys, floor, use_floor, zb, win
        )
        table = np.empty((i1 - i0 if with_bary else 0, 15))
        built = np.zeros(table.shape[0], np.bool_)
        for y in range(r0, r1 + 1):
            for x in range(w):
                j = win[y - r0, x] - 1
                t = items[i0 + j] + 1 if j >= 0 else 0
                ids[b, y, x] = t
                if not with_bary:
                    continue
                if j < 0:
                    _empty_pixel(b, y, x, with_db, rast, rast_db)
                    continue
                if not built[j]:
                    _plane_row(clip, tris, b, t - 1, table, j)
                    built[j] = True
                _bary_pixel(
                    table, j, t, b, y, x, pxs[x], pys[y], 2.0 / w, 2.0 / h, with_db, rast, rast_db
                )
