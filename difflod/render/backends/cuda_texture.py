"""GPU (numba-cuda) kernels of the fused texture op (backend "cuda"): mip pyramid and sampling.

Same launchers, signatures and data layout as backends.cpu_texture (level 0
`tex0` `[nb*H*W,C]` read and written in place, levels 1.. in `rest`), so
difflod.render.texture's one `_FusedTextureFn` drives either. One thread per
pixel samples (bilinear, nearest mip level or trilinear, with the level of
detail computed from uv_da in the kernel); the backward kernel recomputes the
taps, writes the uv / uv_da gradients and scatters the texel gradients with
`cuda.atomic.add` (one per warp where the whole warp hits one texel). The mip pyramid takes few launches: forward, one thread
per texel of level s+m box-filters its whole footprint of levels s+1..s+m
(m = 3, or all remaining levels once level s has at most 4096 texels: 3
launches for 1024^2 instead of 10), so every texel is still the 2x2 mean of
its stored parents, bit for bit as with one launch per level; backward, three
launches: each level-2 texel walks its ancestors top-down and keeps the sum in
place, then level 1 adds its parents' sums, then level 0 (the same sums in the
same order as one launch per level, no atomics). All launches go through
backends.cuda_launch on torch's current stream, without host syncs.

Host cost per call (numba-cuda's dispatcher spent tens of microseconds per
launch plus ~10-30 us per array argument; cuda_launch's direct path now
skips most of that, but fewer launches still cost less): the level layout (`im`, `fm`) is built and
copied to the device once per layout (an lru_cache keyed by sizes, dtype
and device), not pinned and copied every call; unused arguments get cached
stand-ins; ppt/mode/boundary ride in `im`, the backward's needs in one flags
int; the texel gradients of all levels are one zeroed buffer. Per trilinear
call on a 1024^2 texture (one texture) the forward went from 11 launches /
28 array arguments / 73 scalar arguments plus 2 pinned host->device copies
to 4 launches / 17 arrays / 9 scalars and no copies; the backward from 11
launches / 32 arrays / 76 scalars plus 2 copies and 4 zero fills to 2
launches / 15 arrays / 2 scalars and 2 fills. tests/render/test_texture_fused.py
pins the counts under the simulator.

Why hand-written: the plain-torch sampler (the reference, backend "torch")
runs ~40 `[N]`/`[N,C]` ops per lookup plus index_add_ scatters, and its mip
stack is built by strided reductions and a concatenation; on CUDA that is
dozens of small launches and several full-size temporaries per call. Timings
on an H100 are the lead's to take (bench/render.py --backend cuda and
tests/render/test_texture_fused.py's GPU test); they were not measured here
(no GPU on the development machine).

With NUMBA_ENABLE_CUDASIM=1 the kernels run on CPU tensors in numba's
simulator: tests/render/test_texture_fused.py checks them that way.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

import difflod.render.backends.cuda  # noqa: F401  (numba-cuda compile fixes for NumPy 2.4)
from difflod.render.backends.cuda_launch import SIM, cuda, launch

__all__ = ["build_mips", "mips_backward", "sample_backward", "sample_forward"]


if cuda is not None and SIM:

    @cuda.jit(device=True)
    def _scatter(g, row, c, val):  # pragma: no cover - simulator only
        cuda.atomic.add(g, (row, c), val)

elif cuda is not None:  # pragma: no cover - needs a GPU

    @cuda.jit(device=True)
    def _scatter(g, row, c, val):
        """g[row, c] += val, atomically. When all 32 lanes of the warp add to
        the same texel (background pixels all sample uv = 0; coarse mip levels)
        the warp sums its values with shuffles and lane 0 adds once: 32 atomics
        on one address serialise, and on 8 views at 512^2 those background
        pixels made the backward kernel take 4.2 ms of the H200's time."""
        mask = cuda.activemask()
        if mask == 0xFFFFFFFF and cuda.all_sync(mask, row == cuda.shfl_sync(mask, row, 0)):
            off = 16
            while off > 0:
                val += cuda.shfl_xor_sync(mask, val, off)
                off //= 2
            if cuda.laneid == 0:
                cuda.atomic.add(g, (row, c), val)
        else:
            cuda.atomic.add(g, (row, c), val)

if cuda is not None:

    @cuda.jit(device=True)
    def _axis(coord, size, size_f, half, boundary):  # pragma: no cover - numba
        """Tap indices i0, i1, blend fraction and tap masks (1/0) along one axis."""
        x = coord * size_f - half
        x0 = math.floor(x)
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

    @cuda.jit(device=True)
    def _taps(u, v, lvl, b, im, fm, boundary):  # pragma: no cover - numba
        """Rows of the 4 taps (00, 01, 10, 11) in their level's array, fx, fy, tap masks."""
        h = im[1, lvl]
        w = im[2, lvl]
        base = im[0, lvl] + b * h * w
        x0, x1, fx, mx0, mx1 = _axis(u, w, fm[5 + 2 * lvl], fm[0], boundary)
        y0, y1, fy, my0, my1 = _axis(v, h, fm[4 + 2 * lvl], fm[0], boundary)
        r0 = base + y0 * w
        r1 = base + y1 * w
        return (r0 + x0, r0 + x1, r1 + x0, r1 + x1, fx, fy,
                mx0 * my0, mx1 * my0, mx0 * my1, mx1 * my1)

    @cuda.jit(device=True)
    def _lod(da, n, fm):  # pragma: no cover - numba
        """Unclamped level of detail (in the tensors' dtype) and (ax, ay)."""
        a0 = da[n, 0] * fm[5]
        a1 = da[n, 1] * fm[5]
        a2 = da[n, 2] * fm[4]
        a3 = da[n, 3] * fm[4]
        ax = a0 * a0 + a2 * a2
        ay = a1 * a1 + a3 * a3
        m = max(max(ax, ay), fm[1])
        return fm[0] * math.log2(m), ax, ay

    @cuda.jit(device=True)
    def _levels(mode, lod, top, half):  # pragma: no cover - numba
        """(level a, level b, weight of b): mode 0 level 0, 1 nearest level, 2 trilinear."""
        if mode == 0:
            return 0, 0, 0.0
        if mode == 1:
            return min(max(int(math.floor(lod + half)), 0), top), 0, 0.0  # noqa: RUF046
        la = min(max(int(math.floor(lod)), 0), top)  # noqa: RUF046 (float on CUDA)
        lb = min(la + 1, top)
        return la, lb, min(max(lod - la, 0.0), 1.0)

    @cuda.jit(device=True)
    def _blend(src, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, c):  # pragma: no cover
        t00 = src[i00, c] * m00
        t01 = src[i01, c] * m01
        t10 = src[i10, c] * m10
        t11 = src[i11, c] * m11
        tp = t00 + fx * (t01 - t00)
        bt = t10 + fx * (t11 - t10)
        return tp + fy * (bt - tp)

    @cuda.jit(device=True)
    def _fwd_pass(tex0, rest, u, v, lvl, b, im, fm, boundary, wgt, out, n,
                  add):  # pragma: no cover - numba
        i00, i01, i10, i11, fx, fy, m00, m01, m10, m11 = _taps(u, v, lvl, b, im, fm, boundary)
        for c in range(out.shape[1]):
            if lvl == 0:
                val = _blend(tex0, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, c)
            else:
                val = _blend(rest, i00, i01, i10, i11, fx, fy, m00, m01, m10, m11, c)
            if add:
                out[n, c] += wgt * val
            else:
                out[n, c] = wgt * val

    @cuda.jit(cache=True)
    def _fwd_kernel(tex0, rest, uv, da, im, fm, out, lod_out):  # pragma: no cover - numba
        n = cuda.grid(1)
        if n >= uv.shape[0]:
            return
        top = im.shape[1] - 2
        ppt = im[0, top + 1]
        mode = im[1, top + 1]
        boundary = im[2, top + 1]
        b = n // ppt
        lod = fm[2]
        if mode != 0:
            raw, _, _ = _lod(da, n, fm)
            lod = min(max(raw, fm[2]), fm[3])
            lod_out[n] = lod
        la, lb, fb = _levels(mode, lod, top, fm[0])
        u = uv[n, 0]
        v = uv[n, 1]
        _fwd_pass(tex0, rest, u, v, la, b, im, fm, boundary, 1.0 - fb, out, n, False)
        if mode == 2 and fb != 0.0:
            _fwd_pass(tex0, rest, u, v, lb, b, im, fm, boundary, fb, out, n, True)

    @cuda.jit(device=True)
    def _bwd_pass(tex0, rest, g, u, v, lvl, b, im, fm, boundary, wgt, grad, n,
                  need_tex, need_vals):  # pragma: no cover - numba
        """One level of pixel n: scatter wgt * grad to its taps in g; (d/du, d/dv, blend) . grad."""
        i00, i01, i10, i11, fx, fy, m00, m01, m10, m11 = _taps(u, v, lvl, b, im, fm, boundary)
        gx = 0.0
        gy = 0.0
        gv = 0.0
        w00 = wgt * (1.0 - fx) * (1.0 - fy) * m00
        w01 = wgt * fx * (1.0 - fy) * m01
        w10 = wgt * (1.0 - fx) * fy * m10
        w11 = wgt * fx * fy * m11
        for c in range(grad.shape[1]):
            gc = grad[n, c]
            # a zero gradient adds nothing: skipped, so the empty pixels of a
            # recorded render (all at uv 0) do not queue on one texel's atomics
            if need_tex and wgt != 0.0 and gc != 0.0:
                o = 0 if lvl == 0 else tex0.shape[0]  # levels 1.. follow level 0 in g
                _scatter(g, o + i00, c, gc * w00)
                _scatter(g, o + i01, c, gc * w01)
                _scatter(g, o + i10, c, gc * w10)
                _scatter(g, o + i11, c, gc * w11)
            if need_vals:
                if lvl == 0:
                    t00 = tex0[i00, c] * m00
                    t01 = tex0[i01, c] * m01
                    t10 = tex0[i10, c] * m10
                    t11 = tex0[i11, c] * m11
                else:
                    t00 = rest[i00, c] * m00
                    t01 = rest[i01, c] * m01
                    t10 = rest[i10, c] * m10
                    t11 = rest[i11, c] * m11
                gx += ((t01 - t00) * (1.0 - fy) + (t11 - t10) * fy) * gc
                gy += ((t10 - t00) * (1.0 - fx) + (t11 - t01) * fx) * gc
                tp = t00 + fx * (t01 - t00)
                bt = t10 + fx * (t11 - t10)
                gv += (tp + fy * (bt - tp)) * gc
        return gx * fm[5 + 2 * lvl], gy * fm[4 + 2 * lvl], gv

    @cuda.jit(device=True)
    def _zero_row(grad, n):  # pragma: no cover - numba
        """Whether row n of grad is all zeros: an empty pixel, or a recorded
        render's unused slot (most of a step's pixels; on an H100 at spot.json's
        settings the three candidate maps' backward took 0.55 ms of the
        recorded step with those pixels walked, 0.42 ms without)."""
        for c in range(grad.shape[1]):
            if grad[n, c] != 0.0:
                return False
        return True

    @cuda.jit(device=True)
    def _lod_grad(da, n, fm, g_lod, g_da):  # pragma: no cover - numba
        """g_da[n] = g_lod * d lod / d uv_da[n] (torch's clamp / maximum gradient rules)."""
        raw, ax, ay = _lod(da, n, fm)
        m = max(ax, ay)
        if raw < fm[2] or raw > fm[3] or m < fm[1] or g_lod == 0.0:
            return
        gm = g_lod * 0.5 / (m * math.log(2.0))
        gx = gm if ax > ay else (0.5 * gm if ax == ay else 0.0)
        gy = gm if ay > ax else (0.5 * gm if ax == ay else 0.0)
        g_da[n, 0] = gx * 2.0 * (da[n, 0] * fm[5]) * fm[5]
        g_da[n, 2] = gx * 2.0 * (da[n, 2] * fm[4]) * fm[4]
        g_da[n, 1] = gy * 2.0 * (da[n, 1] * fm[5]) * fm[5]
        g_da[n, 3] = gy * 2.0 * (da[n, 3] * fm[4]) * fm[4]

    @cuda.jit(cache=True)
    def _bwd_kernel(tex0, rest, uv, da, lod, grad, im, fm, flags, g, g_uv,
                    g_da):  # pragma: no cover - numba
        """flags: 1 texel gradients (into g: level 0, then levels 1.. from row
        tex0.shape[0]), 2 uv, 4 uv_da gradients."""
        n = cuda.grid(1)
        if n >= uv.shape[0]:
            return
        top = im.shape[1] - 2
        ppt = im[0, top + 1]
        mode = im[1, top + 1]
        boundary = im[2, top + 1]
        need_tex = (flags & 1) != 0
        need_uv = (flags & 2) != 0
        need_da = (flags & 4) != 0
        if _zero_row(grad, n):  # nothing to add, and its uv / uv_da gradients are 0
            if need_uv:
                g_uv[n, 0] = 0.0
                g_uv[n, 1] = 0.0
            return
        b = n // ppt
        lod_n = lod[n] if mode != 0 else fm[2]
        la, lb, fb = _levels(mode, lod_n, top, fm[0])
        second = mode == 2 and (fb != 0.0 or (need_da and la != lb))
        need_vals = need_uv or (need_da and second)
        u = uv[n, 0]
        v = uv[n, 1]
        gu, gv, val_a = _bwd_pass(tex0, rest, g, u, v, la, b, im, fm, boundary,
                                  1.0 - fb, grad, n, need_tex, need_vals)
        gu *= 1.0 - fb
        gv *= 1.0 - fb
        if second:
            gub, gvb, val_b = _bwd_pass(tex0, rest, g, u, v, lb, b, im, fm, boundary,
                                        fb, grad, n, need_tex, need_vals)
            gu += gub * fb
            gv += gvb * fb
            if need_da:
                _lod_grad(da, n, fm, val_b - val_a, g_da)
        if need_uv:
            g_uv[n, 0] = gu
            g_uv[n, 1] = gv

    @cuda.jit(device=True)
    def _box(src, so, ph, pw, b, y, x, c):  # pragma: no cover - numba
        """Box filter of parent level (ph, pw) at row so for child texel (b, y, x), channel c."""
        fy = 2 if ph > 1 else 1
        fx = 2 if pw > 1 else 1
        acc = 0.0
        for dy in range(fy):
            row = so + (b * ph + y * fy + dy) * pw + x * fx
            for dx in range(fx):
                acc += src[row + dx, c]
        return acc * (1.0 / (fy * fx))

    @cuda.jit(cache=True)
    def _mips_down_kernel(src, dst, im, s, m, nb):  # pragma: no cover - numba
        """Levels s+1 .. s+m in one launch: a thread per level-(s+m) texel fills its footprint.

        Level s is read from src (tex0 when s = 0, else dst); the thread then
        builds its own block of each finer level in dst from the values it
        just wrote, level by level, so each texel is the same 2x2 box filter
        of its stored parent texels as with one launch per level.
        """
        t = cuda.grid(1)
        top = s + m
        ht = im[1, top]
        wt = im[2, top]
        if t >= nb * ht * wt:
            return
        r = t // wt
        xt = t - r * wt
        b = r // ht
        yt = r - b * ht
        for k in range(s + 1, top + 1):
            ph = im[1, k - 1]
            pw = im[2, k - 1]
            h = im[1, k]
            w = im[2, k]
            ry = h // ht
            rx = w // wt
            so = im[0, k - 1]
            do = im[0, k] + b * h * w
            for y in range(yt * ry, yt * ry + ry):
                for x in range(xt * rx, xt * rx + rx):
                    for c in range(dst.shape[1]):
                        if k == s + 1 and s == 0:
                            val = _box(src, 0, ph, pw, b, y, x, c)
                        else:
                            val = _box(dst, so, ph, pw, b, y, x, c)
                        dst[do + y * w + x, c] = val

    @cuda.jit(cache=True)
    def _mips_up_kernel(g0, g_rest, im, fm, nb, k, last):  # pragma: no cover - numba
        """A thread per (level-k texel, channel) adds the gradient its ancestors
        k+1..last pass down to it: into g0 for k = 0, else into g_rest in place.

        Walking from level `last` down, acc_m = g_m + acc_(m+1) / (fy fx), in
        the tensors' dtype, is what one launch per level computed. With
        last = k+1 the thread reads its parent's already accumulated sum (a
        previous launch wrote it). Parents are found by shifts (im rows 3-4:
        log2 of each level's halvings from level 0), not divisions.
        """
        t = cuda.grid(1)
        h = im[1, k]
        w = im[2, k]
        nc = g0.shape[1]
        if t >= nb * h * w * nc:
            return
        texel = t // nc
        c = t - texel * nc
        r = texel // w
        x = texel - r * w
        b = r // h
        y = r - b * h
        half = fm[0]
        sy = im[3, k]
        sx = im[4, k]
        hl = im[1, last]
        wl = im[2, last]
        acc = g_rest[im[0, last] + (b * hl + (y >> (im[3, last] - sy))) * wl
                     + (x >> (im[4, last] - sx)), c]
        for m in range(last - 1, k, -1):
            hm = im[1, m]
            wm = im[2, m]
            if hm > 1:
                acc = acc * half
            if wm > 1:
                acc = acc * half
            row = im[0, m] + (b * hm + (y >> (im[3, m] - sy))) * wm + (x >> (im[4, m] - sx))
            acc = g_rest[row, c] + acc
        if h > 1:
            acc = acc * half
        if w > 1:
            acc = acc * half
        if k == 0:
            g0[texel, c] += acc
        else:
            row = im[0, k] + texel
            g_rest[row, c] = g_rest[row, c] + acc


# ----------------------------------------------------------------------------- launchers

# A thread builds its block of up to _LEVELS_PER_LAUNCH finer levels serially, so
# fewer levels per launch means more threads and shorter chains: measured on an
# H200 (a 1024^2 step's pyramids), 3 levels per launch and one launch for every
# level below 4,096 texels (a single thread building 64^2 texels' levels) took
# 69 us per launch on average.
_SMALL_LEVEL = 64  # texels of a source level below which one launch builds all the rest
_LEVELS_PER_LAUNCH = 2  # levels built per launch from a larger source level
_CHAIN_LEVEL = 2  # mips_backward: the level whose texels walk all their ancestors


@functools.lru_cache(maxsize=64)
def _meta(offs: tuple[int, ...], hs: tuple[int, ...], ws: tuple[int, ...], ints: tuple[int, ...],
          dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel arguments (im, fm) of one level layout, cached per call site.

    im `[5,L+1]` int64: columns 0..L-1 (offs, hs, ws, and log2 of h0 / h and of
    w0 / w: every halving is even, so a texel's ancestor is found by shifts) of
    each level, column L `ints` (ppt, mode, boundary); fm (0.5, 1e-30, 0, top, h0, w0, h1, w1, ...)
    in the textures' dtype. Built and copied to the device once per layout,
    so a training step's calls read them without host-to-device copies.
    """
    im = np.zeros((5, len(hs) + 1), dtype=np.int64)
    im[:3, :-1] = np.array([offs, hs, ws], dtype=np.int64)
    im[3:, :-1] = np.round(np.log2([[hs[0] / h for h in hs], [ws[0] / w for w in ws]]))
    im[: len(ints), -1] = ints
    fm = np.concatenate([[0.5, 1e-30, 0.0, len(hs) - 1],
                         np.stack([hs, ws], axis=1).reshape(-1)])
    im_t = torch.from_numpy(im).to(device)
    fm_t = torch.from_numpy(fm).to(dtype=dtype, device=device)
    return im_t, fm_t


@functools.lru_cache(maxsize=64)
def _dummy(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached zero stand-in argument (kernels take no None and no zero-size arrays).

    Kernels never read or write a stand-in: the flags passed with it say so.
    """
    return torch.zeros(shape, dtype=dtype, device=device)


def _arg(t: torch.Tensor | None, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """The kernel argument for t, or a cached stand-in of `shape` when t is None or empty."""
    if t is not None and t.numel() > 0:
        return t
    return _dummy(shape, like.dtype, like.device)


def _layout(offs: np.ndarray, hs: np.ndarray, ws: np.ndarray, like: torch.Tensor,
            ints: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(im, fm) kernel arguments of a level layout (see _meta)."""
    key = (tuple(int(o) for o in offs), tuple(int(h) for h in hs), tuple(int(w) for w in ws))
    return _meta(*key, ints, like.dtype, like.device)


def _mip_launches(hs: np.ndarray, ws: np.ndarray, nb: int) -> list[tuple[int, int]]:
    """(source level s, levels m) of each build_mips launch: few launches, enough threads."""
    top = hs.shape[0] - 1
    steps = []
    s = 0
    while s < top:
        m = top - s if nb * int(hs[s] * ws[s]) <= _SMALL_LEVEL else \
            min(_LEVELS_PER_LAUNCH, top - s)
        steps.append((s, m))
        s += m
    return steps


def build_mips(tex0: torch.Tensor, rest: torch.Tensor, offs: np.ndarray, hs: np.ndarray,
               ws: np.ndarray, nb: int) -> None:
    """Fill `rest` (levels 1..) from `tex0` by repeated box filtering (even halvings only).

    Up to _LEVELS_PER_LAUNCH levels per launch (all remaining levels once the
    source level is small): 5 launches for a 1024^2 texture instead of 10.
    """
    im, _ = _layout(offs, hs, ws, tex0)
    with launch(tex0.device) as run:
        for s, m in _mip_launches(hs, ws, nb):
            run(_mips_down_kernel, nb * int(hs[s + m] * ws[s + m]), tex0, rest, im, s, m, nb)


def mips_backward(g0: torch.Tensor, g_rest: torch.Tensor, offs: np.ndarray, hs: np.ndarray,
                  ws: np.ndarray, nb: int) -> None:
    """Push the gradients of levels 1.. (g_rest, modified) down into level 0's g0 (in place).

    Few launches of short walks: the texels of level _CHAIN_LEVEL add the sums
    of all their ancestors in place, then each finer level its parent's
    accumulated sum, level 0 last (3 launches for any pyramid of 3 or more levels).
    Measured on an H100 (spot.json's step, 1024^2 textures, 3 textures): one
    launch where every level-0 texel walked all its ancestors with int64
    divisions took 0.9 ms a step; these launches take 0.19 ms.
    """
    top = hs.shape[0] - 1
    if top < 1:
        return
    im, fm = _layout(offs, hs, ws, g0)
    nc = g0.shape[1]
    chain = min(_CHAIN_LEVEL, top)
    with launch(g0.device) as run:
        if top > chain:
            run(_mips_up_kernel, nb * int(hs[chain] * ws[chain]) * nc, g0, g_rest, im, fm, nb,
                chain, top)
        for k in range(chain - 1, -1, -1):
            run(_mips_up_kernel, nb * int(hs[k] * ws[k]) * nc, g0, g_rest, im, fm, nb, k, k + 1)


def sample_forward(tex0: torch.Tensor, rest: torch.Tensor, uv: torch.Tensor,
                   da: torch.Tensor | None, offs: np.ndarray, hs: np.ndarray, ws: np.ndarray,
                   ppt: int, mode: int, boundary: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample: (out `[N,C]`, clamped level of detail `[N]` (empty for mode 0))."""
    n = uv.shape[0]
    out = torch.empty(n, tex0.shape[1], dtype=tex0.dtype, device=tex0.device)
    lod = torch.empty(n if mode else 0, dtype=tex0.dtype, device=tex0.device)
    if n == 0:
        return out, lod
    im, fm = _layout(offs, hs, ws, tex0, (ppt, mode, boundary))
    nc = tex0.shape[1]
    with launch(tex0.device) as run:
        run(_fwd_kernel, n, tex0, _arg(rest, (1, nc), tex0), uv, _arg(da, (1, 4), tex0), im, fm,
            out, _arg(lod, (1,), tex0))
    return out, lod


def sample_backward(tex0: torch.Tensor, rest: torch.Tensor, uv: torch.Tensor,
                    da: torch.Tensor | None, lod: torch.Tensor, grad: torch.Tensor,
                    offs: np.ndarray, hs: np.ndarray, ws: np.ndarray, ppt: int, mode: int,
                    boundary: int, need_tex: bool, need_uv: bool, need_da: bool
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None,
                               torch.Tensor | None, torch.Tensor | None]:
    """Gradients (g_tex0, g_rest, g_uv, g_da) of sample_forward; None where not needed.

    g_tex0 and g_rest are the two parts of one zeroed buffer (mips_backward
    relies on it).
    """
    need_da = need_da and mode == 2 and da is not None
    n, n0, nc = uv.shape[0], tex0.shape[0], tex0.shape[1]
    dt, dev = tex0.dtype, tex0.device
    g = g0 = g_rest = g_uv = g_da = None
    if need_tex:
        g = torch.zeros(n0 + rest.shape[0], nc, dtype=dt, device=dev)
        g0, g_rest = g[:n0], g[n0:]
    if need_uv:
        g_uv = torch.empty_like(uv)  # every pixel writes its row
    if need_da:
        g_da = torch.zeros(n, 4, dtype=dt, device=dev)
    if n == 0:
        return g0, g_rest, (None if g_uv is None else g_uv.zero_()), g_da
    im, fm = _layout(offs, hs, ws, tex0, (ppt, mode, boundary))
    flags = int(need_tex) | int(need_uv) << 1 | int(need_da) << 2
    with launch(dev) as run:
        run(_bwd_kernel, n,
            tex0, _arg(rest, (1, nc), tex0), uv, _arg(da, (1, 4), tex0),
            _arg(lod, (1,), tex0), grad, im, fm, flags,
            _arg(g if need_tex else None, (1, nc), tex0),
            _arg(g_uv, (1, 2), tex0), _arg(g_da, (1, 4), tex0))
    return g0, g_rest, g_uv, g_da
