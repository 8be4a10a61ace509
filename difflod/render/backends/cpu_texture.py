"""CPU (numba) kernels of the fused texture op (backend "cpu"): mip pyramid and sampling.

difflod.render.texture's `_FusedTextureFn` calls these launchers; the
plain-torch sampler there stays the reference. Data layout shared with
backends.cuda_texture (the same launcher signatures):

- `tex0` `[nb*H*W, C]`: level 0, the caller's texture itself (no copy);
- `rest` `[R, C]`: levels 1.., level-major, each `[nb,h,w,C]`, level k at
  row `offs[k]` (offs[0] = offs[1] = 0);
- per pixel n: uv `[N,2]`, uv_da `[N,4]` (mip modes), texture batch index
  `n // pix_per_tex`.

Why hand-written, and what changed (torch.profiler of the previous numba
path, 512^2 pixels, 1024^2 RGB texture, trilinear, 2-core machine): the
level of detail was ~20 torch ops on `[N]` tensors before and after the
kernels; level 0 was copied into a flat buffer of all levels; the backward
zero-filled and summed one full texel buffer per thread (~40 MB of memory
traffic) and cloned the texel gradient before pushing it down the pyramid.
Now the level of detail and its gradient to uv_da are computed inside the
sampling kernels, level 0 is read and written in place, and the texel
gradient is scattered without races and without per-thread buffers: every
thread owns one range of texels (ranges cut so that each holds about the
same number of taps, from a histogram taken in the first backward pass) and
scans all pixels, adding only the taps that fall in its range (a level
wholly outside the range is skipped before its taps are computed; in the
bench scene the 2-thread cut fell on the level 0 / level 1 boundary, so no
tap was computed twice). Each texel's
sum then runs in pixel order whatever the thread count: the result is
deterministic and independent of the number of threads.
Kernel details that measured faster (single thread, same process):
numba's `math.floor` (Python semantics: returns an int) cost ~2.5x the
lookup time of `np.floor`; taps of level 0 and of the coarser levels go
through one helper per array (no array variable chosen per pixel, ~1.6x);
wrap mode divides only when a tap index is out of range, the tap histogram
bins by shifts, and mip levels under 2^16 texels are filtered serially in
one call (a parallel region per tiny level cost more than its work).
Measured with bench-like inputs (512^2 pixels of a 20k-triangle sphere,
1024^2 RGB texture, trilinear, mip stack built per call), previous numba
path vs this one, same process, back to back, minimum of 7 (ms):
- CPU time, one numba thread: forward 52.9 -> 31.7, forward+backward
  137.7 -> 100.4;
- wall time, 2 threads, on the shared machine under load ~5-8: forward
  84 -> 59, forward+backward 368 -> 221 (noisy; ratios only).
Of the new single-thread 100 ms: sampling 24, mip build 7, backward pixel
pass (uv, uv_da) 30, texel scatter 21, mip backward 8, the rest zero
fills and the caller's autograd glue.

Arithmetic: the texel coordinate `uv * size - 0.5` and the level of detail
are rounded in the tensors' dtype as in the torch reference; blends and
gradients are accumulated in float64 per pixel (fastmath off) and stored in
the tensors' dtype. Numba compiles each kernel on its first call per dtype
(cached on disk); importing this module compiles nothing.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import prange

from difflod.render.backends.cpu_threads import prefer_openmp

prefer_openmp()

__all__ = ["BOUNDARY_CODES", "build_mips", "mips_backward", "sample_backward",
           "sample_forward"]

#: boundary mode name -> kernel code
BOUNDARY_CODES = {"wrap": 0, "clamp": 1, "zero": 2}
_HIST_BITS = 12  # the scatter balances threads over <= 2^12 bins of texels


# ----------------------------------------------------------------------------- per-pixel helpers

@numba.njit(cache=True, fastmath=False, inline="always")
def _axis(coord, size, size_f, half, boundary):  # pragma: no cover - numba
    """Tap indices i0, i1, blend fraction and tap masks (1/0) along one axis."""
    x = coord * size_f - half
    x0 = np.floor(x)
    frac = x - x0
    i0 = int(x0)
    i1 = i0 + 1
    m0 = 1.0
    m1 = 1.0
    if boundary == 0:  # wrap: i0 is almost always in range, so skip the integer division
        if i0 < 0 or i0 >= size:
            i0 = i0 % size
        i1 = i0 + 1 if i0 + 1 < size else 0
    else:
        if boundary == 2:
            if i0 < 0 or i0 >= size:
                m0 = 0.0
            if i1 < 0 or i1 >= size:
                m1 = 0.0
        i0 = min(max(i0, 0), size - 1)
        i1 = min(max(i1, 0), size - 1)
    return i0, i1, frac, m0, m1


@numba.njit(cache=True, fastmath=False, inline="always")
def _lod(da, n, fsz, cst):  # pragma: no cover - numba
    """Unclamped level of detail of pixel n in the tensors' dtype, and (ax, ay).

    fsz[0] = (h0, w0) and cst = (0.5, 1e-30, 0, top) are in that dtype, so the
    products round as in the torch reference.
    """
    a0 = da[n, 0] * fsz[0, 1]
    a1 = da[n, 1] * fsz[0, 1]
    a2 = da[n, 2] * fsz[0, 0]
    a3 = da[n, 3] * fsz[0, 0]
    ax = a0 * a0 + a2 * a2
    ay = a1 * a1 + a3 * a3
    m = max(max(ax, ay), cst[1])
    return cst[0] * math.log2(m), ax, ay


@numba.njit(cache=True, fastmath=False, inline="always")
def _levels(mode, lod, top, half):  # pragma: no cover - numba
    """(level a, level b, weight of b): mode 0 level 0, 1 nearest level, 2 trilinear."""
    if mode == 0:
        return 0, 0, 0.0
    if mode == 1:
        return min(max(int(np.floor(lod + half)), 0), top), 0, 0.0
    la = min(max(int(np.floor(lod)), 0), top)
    lb = min(la + 1, top)
    return la, lb, min(max(lod - la, 0.0), 1.0)


@numba.njit(cache=True, fastmath=False, inline="always")
def _taps(u, v, lvl, b, offs, hs, ws, fsz, half, boundary):  # pragma: no cover - numba
    """Row indices of the 4 taps (00, 01, 10, 11) in their level's array, fx, fy, masks."""
    h = hs[lvl]
    w = ws[lvl]
    base = offs[lvl] + b * h * w
    x0, x1, fx, mx0, mx1 = _axis(u, w, fsz[lvl, 1], half, boundary)
    y0, y1, fy, my0, my1 = _axis(v, h, fsz[lvl, 0], half, boundary)
    r0 = base + y0 * w
    r1 = base + y1 * w
    return (r0 + x0, r0 + x1, r1 + x0, r1 + x1, fx, fy,
            mx0 * my0, mx1 * my0, mx0 * my1, mx1 * my1)


# ----------------------------------------------------------------------------- sampling kernels

@numba.njit(cache=True, fastmath=False, inline="always")
def _blend_into(src, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, wgt, out, n,
                add):  # pragma: no cover - numba
    """out[n] (+)= wgt * bilinear blend of the 4 (masked) taps of src."""
    for c in range(src.shape[1]):
        t00 = src[i00, c] * m00
        t01 = src[i01, c] * m01
        t10 = src[i10, c] * m10
        t11 = src[i11, c] * m11
        tp = t00 + fx * (t01 - t00)
        bt = t10 + fx * (t11 - t10)
        val = wgt * (tp + fy * (bt - tp))
        if add:
            out[n, c] += val
        else:
            out[n, c] = val


@numba.njit(cache=True, fastmath=False, inline="always")
def _fwd_pass(tex0, rest, u, v, lvl, b, offs, hs, ws, fsz, half, boundary, wgt, out, n,
              add):  # pragma: no cover - numba
    """One level's bilinear lookup of pixel n, weighted, into out[n]."""
    i00, i01, i10, i11, fx, fy, m00, m01, m10, m11 = _taps(u, v, lvl, b, offs, hs, ws, fsz,
                                                           half, boundary)
    if lvl == 0:
        _blend_into(tex0, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, wgt, out, n, add)
    else:
        _blend_into(rest, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, wgt, out, n, add)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _sample_fwd(tex0, rest, uv, da, offs, hs, ws, fsz, cst, ppt, mode, boundary,
                out, lod_out):  # pragma: no cover - numba
    top = hs.shape[0] - 1
    half = cst[0]
    batched = ppt < uv.shape[0]
    for n in prange(uv.shape[0]):
        b = n // ppt if batched else 0
        lod = cst[2]
        if mode != 0:
            raw, _, _ = _lod(da, n, fsz, cst)
            lod = min(max(raw, cst[2]), cst[3])
            lod_out[n] = lod
        la, lb, fb = _levels(mode, lod, top, half)
        u = uv[n, 0]
        v = uv[n, 1]
        # two calls (two inlined copies): written as the backward kernels' loop over
        # the levels it compiled ~2 s faster but ran ~1.5 ms slower (4 x 256^2 views)
        _fwd_pass(tex0, rest, u, v, la, b, offs, hs, ws, fsz, half, boundary, 1.0 - fb, out, n,
                  False)
        if mode == 2 and fb != 0.0:
            _fwd_pass(tex0, rest, u, v, lb, b, offs, hs, ws, fsz, half, boundary, fb, out, n,
                      True)


@numba.njit(cache=True, fastmath=False, inline="always")
def _lod_grad(da, n, fsz, cst, g_lod, g_da):  # pragma: no cover - numba
    """Add g_lod * d lod / d uv_da[n] to g_da[n] (torch's clamp/maximum rules)."""
    raw, ax, ay = _lod(da, n, fsz, cst)
    m = max(ax, ay)
    if raw < cst[2] or raw > cst[3] or m < cst[1] or g_lod == 0.0:
        return
    gm = g_lod * 0.5 / (float(m) * math.log(2.0))
    gx = gm if ax > ay else (0.5 * gm if ax == ay else 0.0)
    gy = gm if ay > ax else (0.5 * gm if ax == ay else 0.0)
    w0 = float(fsz[0, 1])
    h0 = float(fsz[0, 0])
    g_da[n, 0] = gx * 2.0 * float(da[n, 0] * fsz[0, 1]) * w0
    g_da[n, 2] = gx * 2.0 * float(da[n, 2] * fsz[0, 0]) * h0
    g_da[n, 1] = gy * 2.0 * float(da[n, 1] * fsz[0, 1]) * w0
    g_da[n, 3] = gy * 2.0 * float(da[n, 3] * fsz[0, 0]) * h0


@numba.njit(cache=True, fastmath=False, inline="always")
def _tap_grads(src, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, grad, n):  # pragma: no cover
    """(sum_c d blend / d fx * grad, sum_c d blend / d fy * grad, sum_c blend * grad)."""
    gx = 0.0
    gy = 0.0
    gv = 0.0
    for c in range(src.shape[1]):
        g = grad[n, c]
        t00 = src[i00, c] * m00
        t01 = src[i01, c] * m01
        t10 = src[i10, c] * m10
        t11 = src[i11, c] * m11
        gx += ((t01 - t00) * (1.0 - fy) + (t11 - t10) * fy) * g
        gy += ((t10 - t00) * (1.0 - fx) + (t11 - t01) * fx) * g
        tp = t00 + fx * (t01 - t00)
        bt = t10 + fx * (t11 - t10)
        gv += (tp + fy * (bt - tp)) * g
    return gx, gy, gv


@numba.njit(cache=True, fastmath=False, inline="always")
def _bwd_pass(tex0, rest, u, v, lvl, b, offs, hs, ws, fsz, half, boundary, grad, n, hist, ch,
              n0, shift, count, need_vals):  # pragma: no cover - numba
    """One level of pixel n: (d/du, d/dv, blend) summed over channels against grad[n]."""
    i00, i01, i10, i11, fx, fy, m00, m01, m10, m11 = _taps(u, v, lvl, b, offs, hs, ws, fsz,
                                                           half, boundary)
    if count:
        hist[ch, (i00 + (0 if lvl == 0 else n0)) >> shift] += 1
    if not need_vals:
        return 0.0, 0.0, 0.0
    if lvl == 0:
        dx, dy, val = _tap_grads(tex0, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, grad, n)
    else:
        dx, dy, val = _tap_grads(rest, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, grad, n)
    return dx * fsz[lvl, 1], dy * fsz[lvl, 0], val


@numba.njit(parallel=True, cache=True, fastmath=False)
def _sample_bwd_pixels(tex0, rest, uv, da, lod, offs, hs, ws, fsz, cst, ppt, mode, boundary,
                       grad, need_uv, need_da, g_uv, g_da, hist, n0, shift):  # pragma: no cover
    """Per-pixel gradients (uv, uv_da) and a histogram of the taps' flat index >> shift."""
    top = hs.shape[0] - 1
    half = cst[0]
    n_pix = uv.shape[0]
    batched = ppt < n_pix
    n_chunks = hist.shape[0]
    step = (n_pix + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        for n in range(ch * step, min(n_pix, (ch + 1) * step)):
            b = n // ppt if batched else 0
            lod_n = lod[n] if mode != 0 else cst[2]
            la, lb, fb = _levels(mode, lod_n, top, half)
            second = mode == 2 and (fb != 0.0 or (need_da and la != lb))
            need_vals = need_uv or (need_da and second)
            u = uv[n, 0]
            v = uv[n, 1]
            gu = 0.0
            gv = 0.0
            val_a = 0.0
            # the levels as a loop, not two calls: one inlined copy of the pass
            for k in range(2 if second else 1):
                pu, pv, val = _bwd_pass(tex0, rest, u, v, la if k == 0 else lb, b, offs, hs,
                                        ws, fsz, half, boundary, grad, n, hist, ch, n0, shift,
                                        k == 0 or fb != 0.0, need_vals)
                w = 1.0 - fb if k == 0 else fb
                gu += pu * w
                gv += pv * w
                if k == 0:
                    val_a = val
                elif need_da:
                    _lod_grad(da, n, fsz, cst, val - val_a, g_da)
            if need_uv:
                g_uv[n, 0] = gu
                g_uv[n, 1] = gv


@numba.njit(cache=True, fastmath=False, inline="always")
def _add_tap(dst, i, shift, lo, hi, wk, grad, n):  # pragma: no cover - numba
    """dst[i] += wk * grad[n] if the flat index i + shift is in [lo, hi)."""
    if i + shift >= lo and i + shift < hi and wk != 0.0:
        for c in range(dst.shape[1]):
            dst[i, c] += grad[n, c] * wk


@numba.njit(cache=True, fastmath=False, inline="always")
def _add_taps(dst, shift, lo, hi, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, wgt, grad,
              n):  # pragma: no cover - numba
    _add_tap(dst, i00, shift, lo, hi, wgt * (1.0 - fx) * (1.0 - fy) * m00, grad, n)
    _add_tap(dst, i01, shift, lo, hi, wgt * fx * (1.0 - fy) * m01, grad, n)
    _add_tap(dst, i10, shift, lo, hi, wgt * (1.0 - fx) * fy * m10, grad, n)
    _add_tap(dst, i11, shift, lo, hi, wgt * fx * fy * m11, grad, n)


@numba.njit(cache=True, fastmath=False, inline="always")
def _scatter_pass(g0, g_rest, u, v, lvl, b, offs, hs, ws, fsz, half, boundary, wgt, grad, n,
                  n0, lo, hi):  # pragma: no cover - numba
    """Add one level's taps of pixel n that lie in [lo, hi); skip at once if none can."""
    size = hs[lvl] * ws[lvl]
    start = offs[lvl] + b * size + (0 if lvl == 0 else n0)
    if start >= hi or start + size <= lo:
        return
    i00, i01, i10, i11, fx, fy, m00, m01, m10, m11 = _taps(u, v, lvl, b, offs, hs, ws, fsz,
                                                           half, boundary)
    if lvl == 0:
        _add_taps(g0, 0, lo, hi, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, wgt, grad, n)
    else:
        _add_taps(g_rest, n0, lo, hi, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, wgt,
                  grad, n)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _scatter_tex(uv, lod, offs, hs, ws, fsz, cst, ppt, mode, boundary, grad, cuts, n0,
                 g0, g_rest):  # pragma: no cover - numba
    """Texel gradients: thread t adds the taps whose flat index lies in [cuts[t], cuts[t+1])."""
    top = hs.shape[0] - 1
    half = cst[0]
    batched = ppt < uv.shape[0]
    for t in prange(cuts.shape[0] - 1):
        lo = cuts[t]
        hi = cuts[t + 1]
        for n in range(uv.shape[0]):
            b = n // ppt if batched else 0
            lod_n = lod[n] if mode != 0 else cst[2]
            la, lb, fb = _levels(mode, lod_n, top, half)
            u = uv[n, 0]
            v = uv[n, 1]
            # the levels as a loop, not two calls: one inlined copy of the pass
            # (12.5 -> 5 s to compile on a 2-core CPU, the same arithmetic and speed)
            for k in range(2 if mode == 2 and fb != 0.0 else 1):
                _scatter_pass(g0, g_rest, u, v, la if k == 0 else lb, b, offs, hs, ws, fsz,
                              half, boundary, 1.0 - fb if k == 0 else fb, grad, n, n0, lo, hi)


# ----------------------------------------------------------------------------- mip kernels

@numba.njit(cache=True, fastmath=False, inline="always")
def _down_row(src, so, dst, do, ph, pw, h, w, r):  # pragma: no cover - numba
    """Row r (over the texture batch) of level (h, w) at `do`: box filter of level (ph, pw)."""
    fy = 2 if ph > 1 else 1
    fx = 2 if pw > 1 else 1
    scale = 1.0 / (fy * fx)
    b = r // h
    y = r - b * h
    for x in range(w):
        d = do + r * w + x
        for c in range(dst.shape[1]):
            acc = 0.0
            for dy in range(fy):
                row = so + (b * ph + y * fy + dy) * pw + x * fx
                for dx in range(fx):
                    acc += src[row + dx, c]
            dst[d, c] = acc * scale


@numba.njit(cache=True, fastmath=False, inline="always")
def _up_row(g_src, so, g_dst, do, ph, pw, h, w, r):  # pragma: no cover - numba
    """Adjoint of _down_row for parent row r: add each child's gradient / (fy fx)."""
    fy = 2 if ph > 1 else 1
    sx = 1 if pw > 1 else 0
    scale = 1.0 / (fy * (1 << sx))
    b = r // ph
    row = so + (b * h + (r - b * ph) // fy) * w
    for px in range(pw):
        s = row + (px >> sx)
        d = do + r * pw + px
        for c in range(g_dst.shape[1]):
            g_dst[d, c] += g_src[s, c] * scale


@numba.njit(parallel=True, cache=True, fastmath=False)
def _box_down(src, so, dst, do, ph, pw, h, w, nb):  # pragma: no cover - numba
    """dst level (h, w) at row `do` = 2x2 (or 2x1/1x2) box filter of src level (ph, pw) at `so`."""
    for r in prange(nb * h):
        _down_row(src, so, dst, do, ph, pw, h, w, r)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _box_up(g_src, so, g_dst, do, ph, pw, h, w, nb):  # pragma: no cover - numba
    """Adjoint of _box_down: add each level-(h, w) gradient / (fy fx) to its parent texels."""
    for r in prange(nb * ph):
        _up_row(g_src, so, g_dst, do, ph, pw, h, w, r)


@numba.njit(cache=True, fastmath=False)
def _small_down(rest, offs, hs, ws, nb, first):  # pragma: no cover - numba
    """Levels first.. of `rest` from their parents, serially (small levels: no thread wake-ups)."""
    for k in range(first, hs.shape[0]):
        for r in range(nb * hs[k]):
            _down_row(rest, offs[k - 1], rest, offs[k], hs[k - 1], ws[k - 1], hs[k], ws[k], r)


@numba.njit(cache=True, fastmath=False)
def _small_up(g_rest, offs, hs, ws, nb, last):  # pragma: no cover - numba
    """Push levels top..last+1 of g_rest down to their parents (level >= 1), serially."""
    for k in range(hs.shape[0] - 1, last, -1):
        for r in range(nb * hs[k - 1]):
            _up_row(g_rest, offs[k], g_rest, offs[k - 1], hs[k - 1], ws[k - 1], hs[k], ws[k], r)


# ----------------------------------------------------------------------------- launchers

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _consts(hs: np.ndarray, ws: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """fsz `[L,2]` (h, w) and cst (0.5, 1e-30, 0, top level) in the tensors' float dtype."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    fsz = np.stack([hs, ws], axis=1).astype(np_dtype)
    cst = np.array([0.5, 1e-30, 0.0, hs.shape[0] - 1], dtype=np_dtype)
    return fsz, cst


_PARALLEL_TEXELS = 1 << 16  # smaller mip levels are filtered serially


def _first_small(hs: np.ndarray, ws: np.ndarray, nb: int) -> int:
    """The first level >= 2 with fewer than _PARALLEL_TEXELS texels (len(hs) if none)."""
    for k in range(2, hs.shape[0]):
        if nb * hs[k] * ws[k] < _PARALLEL_TEXELS:
            return k
    return hs.shape[0]


def build_mips(tex0: torch.Tensor, rest: torch.Tensor, offs: np.ndarray, hs: np.ndarray,
               ws: np.ndarray, nb: int) -> None:
    """Fill `rest` (levels 1..) from `tex0` by repeated box filtering (even halvings only)."""
    small = _first_small(hs, ws, nb)
    for k in range(1, small):
        src, so = (tex0, 0) if k == 1 else (rest, offs[k - 1])
        _box_down(_np(src), so, _np(rest), offs[k], hs[k - 1], ws[k - 1], hs[k], ws[k], nb)
    if small < hs.shape[0]:
        _small_down(_np(rest), offs, hs, ws, nb, small)


def mips_backward(g0: torch.Tensor, g_rest: torch.Tensor, offs: np.ndarray, hs: np.ndarray,
                  ws: np.ndarray, nb: int) -> None:
    """Push the gradients of levels 1.. (g_rest, modified) down into level 0's g0 (in place)."""
    small = _first_small(hs, ws, nb)
    if small < hs.shape[0]:
        _small_up(_np(g_rest), offs, hs, ws, nb, small - 1)
    for k in range(min(small, hs.shape[0]) - 1, 0, -1):
        dst, do = (g0, 0) if k == 1 else (g_rest, offs[k - 1])
        _box_up(_np(g_rest), offs[k], _np(dst), do, hs[k - 1], ws[k - 1], hs[k], ws[k], nb)


def sample_forward(tex0: torch.Tensor, rest: torch.Tensor, uv: torch.Tensor,
                   da: torch.Tensor | None, offs: np.ndarray, hs: np.ndarray, ws: np.ndarray,
                   ppt: int, mode: int, boundary: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample: (out `[N,C]`, clamped level of detail `[N]` (empty for mode 0))."""
    fsz, cst = _consts(hs, ws, tex0.dtype)
    n = uv.shape[0]
    out = torch.empty(n, tex0.shape[1], dtype=tex0.dtype)
    lod = torch.empty(n if mode else 0, dtype=tex0.dtype)
    da_a = _np(da) if da is not None else np.zeros((0, 4), dtype=fsz.dtype)
    _sample_fwd(_np(tex0), _np(rest), _np(uv), da_a, offs, hs, ws, fsz, cst, ppt, mode,
                boundary, _np(out), _np(lod))
    return out, lod


def _cuts(hist: np.ndarray, shift: int, total: int, parts: int) -> np.ndarray:
    """Flat-index boundaries `[parts+1]` splitting the histogrammed taps (bins of 2^shift) evenly."""
    counts = np.cumsum(hist.sum(0))
    targets = counts[-1] * np.arange(1, parts) / parts
    edges = np.searchsorted(counts, targets, side="left") + 1  # cut before bin `edge`
    inner = np.minimum(edges.astype(np.int64) << shift, total)
    return np.concatenate([[0], inner, [total]]).astype(np.int64)


def sample_backward(tex0: torch.Tensor, rest: torch.Tensor, uv: torch.Tensor,
                    da: torch.Tensor | None, lod: torch.Tensor, grad: torch.Tensor,
                    offs: np.ndarray, hs: np.ndarray, ws: np.ndarray, ppt: int, mode: int,
                    boundary: int, need_tex: bool, need_uv: bool, need_da: bool
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None,
                               torch.Tensor | None, torch.Tensor | None]:
    """Gradients (g_tex0, g_rest, g_uv, g_da) of sample_forward; None where not needed."""
    fsz, cst = _consts(hs, ws, tex0.dtype)
    need_da = need_da and mode == 2 and da is not None
    n0 = tex0.shape[0]
    total = n0 + rest.shape[0]
    threads = numba.get_num_threads()
    shift = max(0, (total - 1).bit_length() - _HIST_BITS)
    hist = np.zeros((threads if need_tex else 1, ((total - 1) >> shift) + 1), dtype=np.int64)
    g_uv = torch.zeros_like(uv) if need_uv else torch.zeros(0, 2, dtype=uv.dtype)
    g_da = torch.zeros(uv.shape[0], 4, dtype=tex0.dtype) if need_da else None
    da_a = _np(da) if da is not None else np.zeros((0, 4), dtype=fsz.dtype)
    grad_a = _np(grad)
    _sample_bwd_pixels(_np(tex0), _np(rest), _np(uv), da_a, _np(lod), offs, hs, ws, fsz, cst,
                       ppt, mode, boundary, grad_a, need_uv, need_da, _np(g_uv),
                       _np(g_da) if g_da is not None else np.zeros((0, 4), dtype=fsz.dtype),
                       hist, n0, shift)
    g0 = g_rest = None
    if need_tex:
        g0 = torch.zeros_like(tex0)
        g_rest = torch.zeros_like(rest)
        cuts = _cuts(hist, shift, total, threads) if threads > 1 else np.array([0, total], np.int64)
        _scatter_tex(_np(uv), _np(lod), offs, hs, ws, fsz, cst, ppt, mode, boundary, grad_a,
                     cuts, n0, _np(g0), _np(g_rest))
    return g0, g_rest, g_uv if need_uv else None, g_da
