"""GPU (numba-cuda) kernels of the analytic antialiasing op (difflod.render.antialias).

Why hand-written: the plain-torch reference (antialias.py, backend "torch")
launches about a hundred small kernels per call (masks, `nonzero`,
gathers of `[P,3,4]` candidate edges, `index_add`) and syncs with the host
at each `nonzero` and validation; the fused path is four kernels, one
thread per pixel (or pair slot), and one host sync (the validation flag).
Not yet timed on a GPU (written on a machine without one; the lead's H100
run of bench/render.py and test_cuda_matches_reference_on_gpu is pending),
so no speed-up is claimed here yet.

Kernels, launched through cuda_launch on torch's stream:

1. `pairs`: per pixel p, its two pair slots (2p: p and its right
   neighbour; 2p+1: p and the pixel above): front pixel, first silhouette
   edge crossing the pair and its crossing c, as `code` (edge k + 3 *
   [p is front], -1 for none) and `cov` (c); counts triangle ids outside
   [0, F] into a flag. `check_tris` counts vertex indices outside [0, V).
2. `blend`: per pixel, a gather over the (up to four) slots touching it, in
   the reference's `index_add` order; no atomics, deterministic.
3. backward `grad_color`: the same gather; `grad_clip`: per hit slot, the
   gradient of c w.r.t. the edge's two vertices (float64 arithmetic),
   added with `cuda.atomic.add` (many pairs share vertices).

Same choices as the reference: NVVM contracts `a*b + c` into FMAs, which
would round differently from torch's separate operations, so the
decisions and the blend use libdevice's round-to-nearest `mul/add/sub`
intrinsics of the tensors' dtype (one kernel set per dtype, built by
`_build`), with the reference's operations in its order: outputs equal the
reference's. The gradients need no such care.

Under NUMBA_ENABLE_CUDASIM=1 the kernels run on CPU tensors (tests).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from difflod.render.backends.cuda_launch import SIM, cuda, launch

__all__ = ["backward_clip", "backward_color", "forward"]


def _build(ft, mul, add, sub) -> SimpleNamespace:
    """The kernels for one float type `ft` with its exact mul/add/sub device functions."""

    @cuda.jit(device=True)
    def screen(v, vw, n):  # pragma: no cover - numba
        """Pixel coordinate of NDC v / vw on an axis of n pixels, as the reference rounds it."""
        return sub(mul(add(v / vw, ft(1.0)), ft(0.5 * n)), ft(0.5))

    @cuda.jit(device=True)
    def det3(ax, ay, aw, bx, by, bw, cx, cy, cw):  # pragma: no cover - numba
        return add(sub(mul(ax, sub(mul(by, cw), mul(bw, cy))),
                       mul(ay, sub(mul(bx, cw), mul(bw, cx)))),
                   mul(aw, sub(mul(bx, cy), mul(by, cx))))

    @cuda.jit(device=True)
    def signed(det, wv):  # pragma: no cover - numba
        """det * sign(wv)."""
        if wv > 0:
            return det
        if wv < 0:
            return -det
        return mul(det, wv)

    @cuda.jit(device=True)
    def silhouette(clip, va, vb, vo, o):  # pragma: no cover - numba
        ax, ay, aw = clip[va, 0], clip[va, 1], clip[va, 3]
        bx, by, bw = clip[vb, 0], clip[vb, 1], clip[vb, 3]
        ox, oy, ow = clip[vo, 0], clip[vo, 1], clip[vo, 3]
        nx, ny, nw = clip[o, 0], clip[o, 1], clip[o, 3]
        s_own = signed(det3(ax, ay, aw, bx, by, bw, ox, oy, ow), ow)
        s_nb = signed(det3(ax, ay, aw, bx, by, bw, nx, ny, nw), nw)
        return mul(s_own, s_nb) > 0

    @cuda.jit(device=True)
    def first_edge(clip, tris, opp, nv, tri, base, axis, along_a, across, sign, h, w):
        # pragma: no cover - numba
        """(first silhouette edge k crossing the pair, its c); k = -1 for none."""
        for k in range(3):
            ia, ib, io = tris[tri, k], tris[tri, (k + 1) % 3], tris[tri, (k + 2) % 3]
            if ia < 0 or ia >= nv or ib < 0 or ib >= nv or io < 0 or io >= nv:
                continue  # reported by check_tris
            va, vb = ia + base, ib + base
            aw, bw = clip[va, 3], clip[vb, 3]
            if not (aw > 0 and bw > 0):
                continue
            sx0, sy0 = screen(clip[va, 0], aw, w), screen(clip[va, 1], aw, h)
            sx1, sy1 = screen(clip[vb, 0], bw, w), screen(clip[vb, 1], bw, h)
            if axis == 0:
                l0, l1, q0, q1 = sx0, sx1, sy0, sy1
            else:
                l0, l1, q0, q1 = sy0, sy1, sx0, sx1
            if (q0 > across) == (q1 > across):
                continue
            t = sub(across, q0) / sub(q1, q0)
            c = mul(sub(add(l0, mul(t, sub(l1, l0))), along_a), sign)
            if not (c >= 0 and c <= 1):
                continue
            o = opp[tri, k]
            if o >= nv:
                continue
            if o < 0 or silhouette(clip, va, vb, io + base, o + base):
                return k, c
        return -1, sign

    @cuda.jit(cache=True)
    def pairs(rast, clip, tris, opp, nv, per_image, h, w, code, cov, flag):  # pragma: no cover
        p = cuda.grid(1)
        if p >= rast.shape[0]:
            return
        n_tris = tris.shape[0]
        x = p % w
        r = p // w
        y = r % h
        base = (r // h) * nv if per_image else 0
        code[2 * p] = -1
        code[2 * p + 1] = -1
        i0 = int(rast[p, 3])
        if i0 < 0 or i0 > n_tris:
            cuda.atomic.add(flag, 0, 1)
            return
        for axis in range(2):
            if axis == 0:
                if x == w - 1:
                    continue
                q = p + 1
            else:
                if y == h - 1:
                    continue
                q = p + w
            i1 = int(rast[q, 3])
            if i1 == i0 or i1 < 0 or i1 > n_tris:
                continue
            front0 = i1 == 0 or (i0 != 0 and rast[p, 2] < rast[q, 2])
            tri = (i0 if front0 else i1) - 1
            sign = ft(1.0) if front0 else ft(-1.0)
            pos = x if axis == 0 else y
            along_a = ft(pos) if front0 else ft(pos + 1)
            across = ft(y) if axis == 0 else ft(x)
            k, c = first_edge(clip, tris, opp, nv, tri, base, axis, along_a, across, sign, h, w)
            if k >= 0:
                code[2 * p + axis] = k + (3 if front0 else 0)
                cov[2 * p + axis] = c

    @cuda.jit(device=True)
    def pair(slot, code, c, w):  # pragma: no cover - numba
        """(target pixel T, other pixel O, frac) of a hit slot: T += frac * (O - T)."""
        p0 = slot // 2
        p1 = p0 + 1 if slot % 2 == 0 else p0 + w
        front0 = code >= 3
        pa = p0 if front0 else p1
        pb = p1 if front0 else p0
        if c > ft(0.5):
            return pb, pa, sub(c, ft(0.5))
        return pa, pb, abs(sub(c, ft(0.5)))

    @cuda.jit(device=True)
    def touching(i, p, x, y, w):  # pragma: no cover - numba
        """Slot i (0..3) touching pixel p in the reference's blend order, or -1."""
        if i == 0:
            return 2 * (p - 1) if x > 0 else -1
        if i == 1:
            return 2 * p
        if i == 2:
            return 2 * (p - w) + 1 if y > 0 else -1
        return 2 * p + 1

    @cuda.jit(cache=True)
    def blend(color, code, cov, h, w, out):  # pragma: no cover - numba
        p = cuda.grid(1)
        if p >= color.shape[0]:
            return
        nc = color.shape[1]
        x = p % w
        y = (p // w) % h
        for ch in range(nc):
            out[p, ch] = color[p, ch]
        for i in range(4):
            slot = touching(i, p, x, y, w)
            if slot < 0 or code[slot] < 0:
                continue
            tgt, oth, frac = pair(slot, code[slot], cov[slot], w)
            if tgt == p:
                for ch in range(nc):
                    out[p, ch] = add(out[p, ch], mul(frac, sub(color[oth, ch], color[p, ch])))

    @cuda.jit(cache=True)
    def grad_color(grad, code, cov, h, w, out):  # pragma: no cover - numba
        p = cuda.grid(1)
        if p >= grad.shape[0]:
            return
        x = p % w
        y = (p // w) % h
        for ch in range(grad.shape[1]):
            acc = float(grad[p, ch])
            for i in range(4):
                slot = touching(i, p, x, y, w)
                if slot < 0 or code[slot] < 0:
                    continue
                tgt, oth, frac = pair(slot, code[slot], cov[slot], w)
                if tgt == p:
                    acc -= float(frac) * float(grad[p, ch])
                elif oth == p:
                    acc += float(frac) * float(grad[tgt, ch])
            out[p, ch] = acc

    @cuda.jit(cache=True)
    def grad_clip(rast, clip, tris, color, grad, code, cov, nv, per_image, h, w, out):
        # pragma: no cover - numba
        slot = cuda.grid(1)
        if slot >= code.shape[0] or code[slot] < 0:
            return
        cd = code[slot]
        p = slot // 2
        axis = slot % 2
        r = p // w
        x = p - r * w
        y = r % h
        base = (r // h) * nv if per_image else 0
        tgt, oth, _ = pair(slot, cd, cov[slot], w)
        c = float(cov[slot])
        dfrac = 0.0
        for ch in range(color.shape[1]):
            dfrac += float(grad[tgt, ch]) * (float(color[oth, ch]) - float(color[tgt, ch]))
        dc = dfrac * (1.0 if c > 0.5 else (-1.0 if c < 0.5 else 0.0))
        front0 = cd >= 3
        k = cd - (3 if front0 else 0)
        pa = p if front0 else (p + 1 if axis == 0 else p + w)
        tri = int(rast[pa, 3]) - 1
        va = tris[tri, k] + base
        vb = tris[tri, (k + 1) % 3] + base
        sign = 1.0 if front0 else -1.0
        across = float(y if axis == 0 else x)
        hw = 0.5 * w
        hh = 0.5 * h
        xa, ya, wa = float(clip[va, 0]), float(clip[va, 1]), float(clip[va, 3])
        xb, yb, wb = float(clip[vb, 0]), float(clip[vb, 1]), float(clip[vb, 3])
        sxa, sya = (xa / wa + 1.0) * hw - 0.5, (ya / wa + 1.0) * hh - 0.5
        sxb, syb = (xb / wb + 1.0) * hw - 0.5, (yb / wb + 1.0) * hh - 0.5
        if axis == 0:
            l0, l1, q0, q1 = sxa, sxb, sya, syb
        else:
            l0, l1, q0, q1 = sya, syb, sxa, sxb
        dq = q1 - q0
        t = (across - q0) / dq
        g_l0 = dc * sign * (1.0 - t)
        g_l1 = dc * sign * t
        g_q0 = dc * sign * (l1 - l0) * (t - 1.0) / dq
        g_q1 = -dc * sign * (l1 - l0) * t / dq
        if axis == 0:
            gsxa, gsya, gsxb, gsyb = g_l0, g_q0, g_l1, g_q1
        else:
            gsxa, gsya, gsxb, gsyb = g_q0, g_l0, g_q1, g_l1
        cuda.atomic.add(out, (va, 0), gsxa * hw / wa)
        cuda.atomic.add(out, (va, 1), gsya * hh / wa)
        cuda.atomic.add(out, (va, 3), -(gsxa * hw * xa + gsya * hh * ya) / (wa * wa))
        cuda.atomic.add(out, (vb, 0), gsxb * hw / wb)
        cuda.atomic.add(out, (vb, 1), gsyb * hh / wb)
        cuda.atomic.add(out, (vb, 3), -(gsxb * hw * xb + gsyb * hh * yb) / (wb * wb))

    return SimpleNamespace(pairs=pairs, blend=blend, grad_color=grad_color, grad_clip=grad_clip)


def _exact_ops() -> dict[torch.dtype, tuple]:
    """(float type, mul, add, sub) per dtype: libdevice's _rn intrinsics (no FMA contraction)."""
    if SIM:
        @cuda.jit(device=True)
        def mul(a, b):  # pragma: no cover - simulator
            return a * b

        @cuda.jit(device=True)
        def add(a, b):  # pragma: no cover - simulator
            return a + b

        @cuda.jit(device=True)
        def sub(a, b):  # pragma: no cover - simulator
            return a - b

        return {torch.float32: (np.float32, mul, add, sub),
                torch.float64: (np.float64, mul, add, sub)}
    from numba.cuda import libdevice  # pragma: no cover - needs numba's CUDA target

    @cuda.jit(device=True)
    def dsub(a, b):  # pragma: no cover - numba
        return libdevice.dadd_rn(a, -b)

    return {torch.float32: (np.float32, libdevice.fmul_rn, libdevice.fadd_rn, libdevice.fsub_rn),
            torch.float64: (np.float64, libdevice.dmul_rn, libdevice.dadd_rn, dsub)}


if cuda is not None:

    @cuda.jit(cache=True)
    def _check_tris(tris, nv, flag):  # pragma: no cover - numba
        i = cuda.grid(1)
        if i < tris.shape[0] * 3:
            v = tris[i // 3, i % 3]
            if v < 0 or v >= nv:
                cuda.atomic.add(flag, 1, 1)

    _KERNELS = {dt: _build(*ops) for dt, ops in _exact_ops().items()}


def _kernels(dtype: torch.dtype) -> SimpleNamespace:
    if cuda is None:
        raise RuntimeError("numba.cuda is not importable")
    if dtype not in _KERNELS:
        raise ValueError(f"color must be float32 or float64 for the cuda kernels, got {dtype}")
    return _KERNELS[dtype]


def forward(color: torch.Tensor, rast: torch.Tensor, clip: torch.Tensor, tris: torch.Tensor,
            opp: torch.Tensor, nv: int, per_image: bool, h: int, w: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Antialiased colours, the pair record, and the validation flag (no host sync).

    Args:
        color: `[N,C]` float32/float64 contiguous, N = B*H*W; rast `[N,4]` float
            contiguous; clip `[rows,4]` contiguous in color's dtype; tris, opp
            `[F,3]` int64 contiguous (Topology); all on one CUDA device (CPU
            under the simulator).
        nv: vertices per image; per_image: clip holds B sets of nv rows.
    Returns:
        (out `[N,C]`, code `[2N]` int8, cov `[2N]`, flag `[2]` int32 = number of
        triangle ids outside [0, F], number of vertex indices outside [0, nv)).
    """
    k = _kernels(color.dtype)
    n = color.shape[0]
    dev = color.device
    out = torch.empty_like(color)
    code = torch.empty(2 * n, dtype=torch.int8, device=dev)
    cov = torch.zeros(2 * n, dtype=color.dtype, device=dev)
    flag = torch.zeros(2, dtype=torch.int32, device=dev)
    with launch(dev) as run:
        if tris.numel():
            run(_check_tris, tris.numel(), tris, nv, flag)
        if n:
            run(k.pairs, n, rast, clip, tris, opp, nv, per_image, h, w, code, cov, flag)
            run(k.blend, n, color, code, cov, h, w, out)
    return out, code, cov, flag


def backward_color(grad: torch.Tensor, code: torch.Tensor, cov: torch.Tensor, h: int, w: int
                   ) -> torch.Tensor:
    """Gradient w.r.t. color `[N,C]` (grad `[N,C]` contiguous, color's dtype)."""
    out = torch.empty_like(grad)
    if grad.shape[0]:
        with launch(grad.device) as run:
            run(_kernels(grad.dtype).grad_color, grad.shape[0], grad, code, cov, h, w, out)
    return out


def backward_clip(grad: torch.Tensor, color: torch.Tensor, rast: torch.Tensor,
                  clip: torch.Tensor, tris: torch.Tensor, code: torch.Tensor,
                  cov: torch.Tensor, nv: int, per_image: bool, h: int, w: int) -> torch.Tensor:
    """Gradient w.r.t. clip `[rows,4]` in clip's dtype, through the crossings c."""
    out = torch.zeros(clip.shape[0], 4, dtype=clip.dtype, device=clip.device)
    if code.numel():
        with launch(grad.device) as run:
            run(_kernels(color.dtype).grad_clip, code.numel(), rast, clip, tris, color, grad,
                code, cov, nv, per_image, h, w, out)
    return out
