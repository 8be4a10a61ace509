"""GPU (numba-cuda) kernels of the fused texture op (backend "cuda"): mip pyramid and sampling.

Same launchers, signatures and data layout as backends.cpu_texture (level 0
`tex0` `[nb*H*W,C]` read and written in place, levels 1.. in `rest`), so
difflod.render.texture's one `_FusedTextureFn` drives either. One thread per
pixel samples (bilinear, nearest mip level or trilinear, with the level of
detail computed from uv_da in the kernel); the backward kernel recomputes the
taps, writes the uv / uv_da gradients and scatters the texel gradients with
`cuda.atomic.add`. The mip pyramid is one launch per level (one thread per
texel, forward: box filter; backward: each texel pulls its share from the
coarser level, no atomics), all launched through backends.cuda_launch on
torch's current stream, without host syncs.

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

import math

import numpy as np
import torch

import difflod.render.backends.cuda  # noqa: F401  (numba-cuda compile fixes for NumPy 2.4)
from difflod.render.backends.cuda_launch import THREADS, as_array, blocks, cuda, launch

__all__ = ["build_mips", "mips_backward", "sample_backward", "sample_forward"]


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

    @cuda.jit
    def _fwd_kernel(tex0, rest, uv, da, im, fm, ppt, mode, boundary, out,
                    lod_out):  # pragma: no cover - numba
        n = cuda.grid(1)
        if n >= uv.shape[0]:
            return
        top = im.shape[1] - 1
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
    def _bwd_pass(tex0, rest, g0, g_rest, u, v, lvl, b, im, fm, boundary, wgt, grad, n,
                  need_tex, need_vals):  # pragma: no cover - numba
        """One level of pixel n: scatter wgt * grad to its taps; (d/du, d/dv, blend) . grad."""
        i00, i01, i10, i11, fx, fy, m00, m01, m10, m11 = _taps(u, v, lvl, b, im, fm, boundary)
        gx = 0.0
        gy = 0.0
        gv = 0.0
        w00 = wgt * (1.0 - fx) * (1.0 - fy) * m00
        w01 = wgt * fx * (1.0 - fy) * m01
        w10 = wgt * (1.0 - fx) * fy * m10
        w11 = wgt * fx * fy * m11
        for c in range(grad.shape[1]):
            g = grad[n, c]
            if need_tex and wgt != 0.0:
                if lvl == 0:
                    cuda.atomic.add(g0, (i00, c), g * w00)
                    cuda.atomic.add(g0, (i01, c), g * w01)
                    cuda.atomic.add(g0, (i10, c), g * w10)
                    cuda.atomic.add(g0, (i11, c), g * w11)
                else:
                    cuda.atomic.add(g_rest, (i00, c), g * w00)
                    cuda.atomic.add(g_rest, (i01, c), g * w01)
                    cuda.atomic.add(g_rest, (i10, c), g * w10)
                    cuda.atomic.add(g_rest, (i11, c), g * w11)
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
                gx += ((t01 - t00) * (1.0 - fy) + (t11 - t10) * fy) * g
                gy += ((t10 - t00) * (1.0 - fx) + (t11 - t01) * fx) * g
                tp = t00 + fx * (t01 - t00)
                bt = t10 + fx * (t11 - t10)
                gv += (tp + fy * (bt - tp)) * g
        return gx * fm[5 + 2 * lvl], gy * fm[4 + 2 * lvl], gv

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

    @cuda.jit
    def _bwd_kernel(tex0, rest, uv, da, lod, grad, im, fm, ppt, mode, boundary, need_tex,
                    need_uv, need_da, g0, g_rest, g_uv, g_da):  # pragma: no cover - numba
        n = cuda.grid(1)
        if n >= uv.shape[0]:
            return
        top = im.shape[1] - 1
        b = n // ppt
        lod_n = lod[n] if mode != 0 else fm[2]
        la, lb, fb = _levels(mode, lod_n, top, fm[0])
        second = mode == 2 and (fb != 0.0 or (need_da and la != lb))
        need_vals = need_uv or (need_da and second)
        u = uv[n, 0]
        v = uv[n, 1]
        gu, gv, val_a = _bwd_pass(tex0, rest, g0, g_rest, u, v, la, b, im, fm, boundary,
                                  1.0 - fb, grad, n, need_tex, need_vals)
        gu *= 1.0 - fb
        gv *= 1.0 - fb
        if second:
            gub, gvb, val_b = _bwd_pass(tex0, rest, g0, g_rest, u, v, lb, b, im, fm, boundary,
                                        fb, grad, n, need_tex, need_vals)
            gu += gub * fb
            gv += gvb * fb
            if need_da:
                _lod_grad(da, n, fm, val_b - val_a, g_da)
        if need_uv:
            g_uv[n, 0] = gu
            g_uv[n, 1] = gv

    @cuda.jit
    def _box_down_kernel(src, so, dst, do, ph, pw, h, w, nb):  # pragma: no cover - numba
        """dst level (h, w) at row do = 2x2 (or 2x1/1x2) box filter of src level (ph, pw) at so."""
        t = cuda.grid(1)
        if t >= nb * h * w:
            return
        r = t // w
        x = t - r * w
        b = r // h
        y = r - b * h
        fy = 2 if ph > 1 else 1
        fx = 2 if pw > 1 else 1
        scale = 1.0 / (fy * fx)
        for c in range(dst.shape[1]):
            acc = 0.0
            for dy in range(fy):
                row = so + (b * ph + y * fy + dy) * pw + x * fx
                for dx in range(fx):
                    acc += src[row + dx, c]
            dst[do + t, c] = acc * scale

    @cuda.jit
    def _box_up_kernel(g_src, so, g_dst, do, ph, pw, h, w, nb):  # pragma: no cover - numba
        """Adjoint of _box_down_kernel: each parent texel adds its share of the child's gradient."""
        t = cuda.grid(1)
        if t >= nb * ph * pw:
            return
        r = t // pw
        px = t - r * pw
        b = r // ph
        fy = 2 if ph > 1 else 1
        fx = 2 if pw > 1 else 1
        y = (r - b * ph) // fy
        s = so + (b * h + y) * w + px // fx
        scale = 1.0 / (fy * fx)
        for c in range(g_dst.shape[1]):
            g_dst[do + t, c] += g_src[s, c] * scale


# ----------------------------------------------------------------------------- launchers

def _meta(offs: np.ndarray, hs: np.ndarray, ws: np.ndarray, like: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """im `[3,L]` int64 (offs, hs, ws) and fm (0.5, 1e-30, 0, top, h0, w0, h1, w1, ...) on like's device."""
    im = torch.from_numpy(np.stack([offs, hs, ws]).astype(np.int64))
    fm = np.concatenate([[0.5, 1e-30, 0.0, hs.shape[0] - 1],
                         np.stack([hs, ws], axis=1).reshape(-1)])
    fm_t = torch.from_numpy(fm).to(like.dtype)
    if like.device.type != "cuda":  # the simulator's CPU tensors
        return im, fm_t
    # pinned + non_blocking: the copies queue on the stream instead of syncing the host
    return (im.pin_memory().to(like.device, non_blocking=True),
            fm_t.pin_memory().to(like.device, non_blocking=True))


def build_mips(tex0: torch.Tensor, rest: torch.Tensor, offs: np.ndarray, hs: np.ndarray,
               ws: np.ndarray, nb: int) -> None:
    """Fill `rest` (levels 1..) from `tex0` by repeated box filtering (even halvings only)."""
    with launch(tex0.device) as stream:
        for k in range(1, hs.shape[0]):
            src, so = (tex0, 0) if k == 1 else (rest, int(offs[k - 1]))
            n = nb * int(hs[k] * ws[k])
            _box_down_kernel[blocks(n), THREADS, stream](
                as_array(src), so, as_array(rest), int(offs[k]), int(hs[k - 1]), int(ws[k - 1]),
                int(hs[k]), int(ws[k]), nb)


def mips_backward(g0: torch.Tensor, g_rest: torch.Tensor, offs: np.ndarray, hs: np.ndarray,
                  ws: np.ndarray, nb: int) -> None:
    """Push the gradients of levels 1.. (g_rest, modified) down into level 0's g0 (in place)."""
    with launch(g0.device) as stream:
        for k in range(hs.shape[0] - 1, 0, -1):
            dst, do = (g0, 0) if k == 1 else (g_rest, int(offs[k - 1]))
            n = nb * int(hs[k - 1] * ws[k - 1])
            _box_up_kernel[blocks(n), THREADS, stream](
                as_array(g_rest), int(offs[k]), as_array(dst), do, int(hs[k - 1]),
                int(ws[k - 1]), int(hs[k]), int(ws[k]), nb)


def _nonempty(t: torch.Tensor | None, cols: int, like: torch.Tensor) -> torch.Tensor:
    """t, or a `[1,cols]` dummy (kernels take no None and no zero-size arrays)."""
    if t is not None and t.numel() > 0:
        return t
    return torch.zeros(1, cols, dtype=like.dtype, device=like.device)


def sample_forward(tex0: torch.Tensor, rest: torch.Tensor, uv: torch.Tensor,
                   da: torch.Tensor | None, offs: np.ndarray, hs: np.ndarray, ws: np.ndarray,
                   ppt: int, mode: int, boundary: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample: (out `[N,C]`, clamped level of detail `[N]` (empty for mode 0))."""
    n = uv.shape[0]
    out = torch.empty(n, tex0.shape[1], dtype=tex0.dtype, device=tex0.device)
    lod = torch.empty(n if mode else 0, dtype=tex0.dtype, device=tex0.device)
    if n == 0:
        return out, lod
    im, fm = _meta(offs, hs, ws, tex0)
    with launch(tex0.device) as stream:
        _fwd_kernel[blocks(n), THREADS, stream](
            as_array(tex0), as_array(_nonempty(rest, tex0.shape[1], tex0)), as_array(uv),
            as_array(_nonempty(da, 4, tex0)), as_array(im), as_array(fm), ppt, mode, boundary,
            as_array(out), as_array(lod if mode else _nonempty(None, 1, tex0)[0]))
    return out, lod


def sample_backward(tex0: torch.Tensor, rest: torch.Tensor, uv: torch.Tensor,
                    da: torch.Tensor | None, lod: torch.Tensor, grad: torch.Tensor,
                    offs: np.ndarray, hs: np.ndarray, ws: np.ndarray, ppt: int, mode: int,
                    boundary: int, need_tex: bool, need_uv: bool, need_da: bool
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None,
                               torch.Tensor | None, torch.Tensor | None]:
    """Gradients (g_tex0, g_rest, g_uv, g_da) of sample_forward; None where not needed."""
    need_da = need_da and mode == 2 and da is not None
    n = uv.shape[0]
    g0 = torch.zeros_like(tex0) if need_tex else None
    g_rest = torch.zeros_like(rest) if need_tex else None
    g_uv = torch.zeros_like(uv) if need_uv else None
    g_da = torch.zeros(n, 4, dtype=tex0.dtype, device=tex0.device) if need_da else None
    if n == 0:
        return g0, g_rest, g_uv, g_da
    im, fm = _meta(offs, hs, ws, tex0)
    nc = tex0.shape[1]
    with launch(tex0.device) as stream:
        _bwd_kernel[blocks(n), THREADS, stream](
            as_array(tex0), as_array(_nonempty(rest, nc, tex0)), as_array(uv),
            as_array(_nonempty(da, 4, tex0)),
            as_array(lod if mode else _nonempty(None, 1, tex0)[0]), as_array(grad),
            as_array(im), as_array(fm), ppt, mode, boundary, need_tex, need_uv, need_da,
            as_array(g0 if g0 is not None else _nonempty(None, nc, tex0)),
            as_array(_nonempty(g_rest, nc, tex0)),
            as_array(g_uv if g_uv is not None else _nonempty(None, 2, tex0)),
            as_array(g_da if g_da is not None else _nonempty(None, 4, tex0)))
    return g0, g_rest, g_uv, g_da
