"""GPU (numba-cuda) kernels for rasterize's barycentrics, used by the "cuda" backend.

The same float64 formulas as difflod.render.rasterize.raster_from_ids (the
plain-torch reference) and backends/cpu_raster.py, in three kernels launched
through cuda_launch (torch's stream, no copies, no host synchronisation):

1. `_forward_kernel`, one thread per pixel: gathers its triangle's three
   clip-space vertices, builds the planes E1, E2, E0+E1+E2, sum z_i E_i,
   sum w_i E_i (E_i = V_j x V_k, V = (x, y, w)) and writes rast = (u, v,
   z/w, id + 1) and rast_db. Recomputing the planes per pixel costs ~100
   float64 operations and needs no per-triangle table, so there is no setup
   launch and no compaction (which would need a host sync to size).
2. `_pixel_grad_kernel`, one thread per pixel: the gradient of the 15 plane
   coefficients. A block's threads cover consecutive pixels of a row, where
   neighbours mostly share a triangle: the values go to shared memory and
   the first thread of each run of equal (image, triangle) sums the run and
   does the 15 atomic adds into `acc [B*F,15]` float64, one per run rather
   than one per pixel.
3. `_chain_kernel`, one thread per (image, triangle) with a nonzero
   accumulator: chains it to the 12 clip coordinates of the triangle's
   vertices and atomically adds them into grad_clip `[B,V,4]`.

Why hand-written: the torch reference is ~60 tensor ops over the covered
pixels forward and their autograd replay backward (plus index_put/index_add
scatters); here it is one launch forward, two backward. Timings on an H100
are measured by the lead (tests/render/test_raster_fused.py holds the kernels
to the reference, on a GPU and under NUMBA_ENABLE_CUDASIM=1).
"""

from __future__ import annotations

import torch

from difflod.render.backends.cuda_launch import THREADS, cuda, launch

__all__ = ["barycentrics_backward", "barycentrics_forward"]

_NP = 15  # plane coefficients per (image, triangle)

if cuda is not None:
    from numba import float64 as _f64
    from numba import int64 as _i64

    @cuda.jit(device=True)
    def _vertex(clip, b, vi):  # pragma: no cover - numba
        """(x, y, z, w) of vertex vi of image b, in float64.

        Not `float(...)`: numba types float() of a float32 as float32, so the
        planes were computed in float32 on the GPU (the simulator's Python
        floats hid it); the H100 test caught u, v off by up to 3e-3.
        """
        return (_f64(clip[b, vi, 0]), _f64(clip[b, vi, 1]), _f64(clip[b, vi, 2]),
                _f64(clip[b, vi, 3]))

    @cuda.jit(device=True)
    def _planes(clip, tris, b, f):  # pragma: no cover - numba
        """The 15 plane coefficients of triangle f in image b, float64."""
        i0, i1, i2 = tris[f, 0], tris[f, 1], tris[f, 2]
        x0, y0, z0, w0 = _vertex(clip, b, i0)
        x1, y1, z1, w1 = _vertex(clip, b, i1)
        x2, y2, z2, w2 = _vertex(clip, b, i2)
        e0x, e0y, e0w = y1 * w2 - w1 * y2, w1 * x2 - x1 * w2, x1 * y2 - y1 * x2
        e1x, e1y, e1w = y2 * w0 - w2 * y0, w2 * x0 - x2 * w0, x2 * y0 - y2 * x0
        e2x, e2y, e2w = y0 * w1 - w0 * y1, w0 * x1 - x0 * w1, x0 * y1 - y0 * x1
        return (
            e1x, e1y, e1w,
            e2x, e2y, e2w,
            e0x + e1x + e2x, e0y + e1y + e2y, e0w + e1w + e2w,
            e0x * z0 + e1x * z1 + e2x * z2,
            e0y * z0 + e1y * z1 + e2y * z2,
            e0w * z0 + e1w * z1 + e2w * z2,
            e0x * w0 + e1x * w1 + e2x * w2,
            e0y * w0 + e1y * w1 + e2y * w2,
            e0w * w0 + e1w * w1 + e2w * w2,
        )

    @cuda.jit(cache=True)
    def _forward_kernel(clip, tris, tri_id, h, w, with_db, rast, rast_db):  # pragma: no cover
        pix = cuda.grid(1)
        n_b = tri_id.shape[0]
        if pix >= n_b * h * w:
            return
        b = pix // (h * w)
        rem = pix - b * (h * w)
        y = rem // w
        x = rem - y * w
        t = tri_id[b, y, x]
        if t <= 0:
            return
        pl = _planes(clip, tris, b, t - 1)
        px = (2.0 * x + 1.0) / w - 1.0
        py = (2.0 * y + 1.0) / h - 1.0
        e1 = pl[0] * px + pl[1] * py + pl[2]
        e2 = pl[3] * px + pl[4] * py + pl[5]
        s = pl[6] * px + pl[7] * py + pl[8]
        zn = pl[9] * px + pl[10] * py + pl[11]
        wn = pl[12] * px + pl[13] * py + pl[14]
        rast[b, y, x, 0] = e1 / s
        rast[b, y, x, 1] = e2 / s
        rast[b, y, x, 2] = zn / wn
        rast[b, y, x, 3] = t
        if with_db:
            s2 = s * s
            rast_db[b, y, x, 0] = (pl[0] * s - e1 * pl[6]) / s2 * (2.0 / w)
            rast_db[b, y, x, 1] = (pl[1] * s - e1 * pl[7]) / s2 * (2.0 / h)
            rast_db[b, y, x, 2] = (pl[3] * s - e2 * pl[6]) / s2 * (2.0 / w)
            rast_db[b, y, x, 3] = (pl[4] * s - e2 * pl[7]) / s2 * (2.0 / h)

    @cuda.jit(cache=True)
    def _pixel_grad_kernel(  # pragma: no cover - numba
        clip, tris, tri_id, h, w, grad_rast, with_rast, grad_db, with_db, acc
    ):
        keys = cuda.shared.array(THREADS, dtype=_i64)
        vals = cuda.shared.array((_NP, THREADS), dtype=_f64)
        tid = cuda.threadIdx.x
        pix = cuda.grid(1)
        n_b = tri_id.shape[0]
        n_f = tris.shape[0]
        key = -1
        for c in range(_NP):
            vals[c, tid] = 0.0
        if pix < n_b * h * w:
            b = pix // (h * w)
            rem = pix - b * (h * w)
            y = rem // w
            x = rem - y * w
            t = tri_id[b, y, x]
            if t > 0:
                key = b * n_f + t - 1
                pl = _planes(clip, tris, b, t - 1)
                cx = 2.0 / w
                cy = 2.0 / h
                px = (2.0 * x + 1.0) / w - 1.0
                py = (2.0 * y + 1.0) / h - 1.0
                gu = gv = gz = 0.0
                g0 = g1 = g2 = g3 = 0.0
                if with_rast:
                    gu = _f64(grad_rast[b, y, x, 0])
                    gv = _f64(grad_rast[b, y, x, 1])
                    gz = _f64(grad_rast[b, y, x, 2])
                if with_db:
                    g0 = _f64(grad_db[b, y, x, 0])
                    g1 = _f64(grad_db[b, y, x, 1])
                    g2 = _f64(grad_db[b, y, x, 2])
                    g3 = _f64(grad_db[b, y, x, 3])
                e1 = pl[0] * px + pl[1] * py + pl[2]
                e2 = pl[3] * px + pl[4] * py + pl[5]
                s = pl[6] * px + pl[7] * py + pl[8]
                zn = pl[9] * px + pl[10] * py + pl[11]
                wn = pl[12] * px + pl[13] * py + pl[14]
                ax, ay, bx, by, sx, sy = pl[0], pl[1], pl[3], pl[4], pl[6], pl[7]
                r = 1.0 / s
                r2 = r * r
                ge1 = gu * r - (g0 * cx * sx + g1 * cy * sy) * r2
                ge2 = gv * r - (g2 * cx * sx + g3 * cy * sy) * r2
                gs = -(gu * e1 + gv * e2) * r2 + (
                    g0 * cx * (2.0 * e1 * sx - ax * s)
                    + g1 * cy * (2.0 * e1 * sy - ay * s)
                    + g2 * cx * (2.0 * e2 * sx - bx * s)
                    + g3 * cy * (2.0 * e2 * sy - by * s)
                ) * (r2 * r)
                rw = 1.0 / wn
                gzn = gz * rw
                gwn = -gz * zn * rw * rw
                vals[0, tid] = ge1 * px + g0 * cx * r
                vals[1, tid] = ge1 * py + g1 * cy * r
                vals[2, tid] = ge1
                vals[3, tid] = ge2 * px + g2 * cx * r
                vals[4, tid] = ge2 * py + g3 * cy * r
                vals[5, tid] = ge2
                vals[6, tid] = gs * px - (g0 * e1 + g2 * e2) * cx * r2
                vals[7, tid] = gs * py - (g1 * e1 + g3 * e2) * cy * r2
                vals[8, tid] = gs
                vals[9, tid] = gzn * px
                vals[10, tid] = gzn * py
                vals[11, tid] = gzn
                vals[12, tid] = gwn * px
                vals[13, tid] = gwn * py
                vals[14, tid] = gwn
        keys[tid] = key
        cuda.syncthreads()
        if key < 0 or (tid > 0 and keys[tid - 1] == key):
            return
        end = tid + 1  # this thread heads a run of equal keys: sum it
        while end < THREADS and keys[end] == key:
            end += 1
        for c in range(_NP):
            total = 0.0
            for j in range(tid, end):
                total += vals[c, j]
            cuda.atomic.add(acc, (key, c), total)

    @cuda.jit(cache=True)
    def _chain_kernel(clip, tris, acc, grad_clip):  # pragma: no cover - numba
        t = cuda.grid(1)
        n_f = tris.shape[0]
        if t >= clip.shape[0] * n_f:
            return
        nonzero = False
        for c in range(_NP):
            if acc[t, c] != 0.0:
                nonzero = True
        if not nonzero:
            return
        b = t // n_f
        f = t - b * n_f
        for i in range(3):
            j = (i + 1) % 3
            m = (i + 2) % 3
            vi, vj, vm = tris[f, i], tris[f, j], tris[f, m]
            zi, wi = _f64(clip[b, vi, 2]), _f64(clip[b, vi, 3])
            xj, yj, wj = _f64(clip[b, vj, 0]), _f64(clip[b, vj, 1]), _f64(clip[b, vj, 3])
            xm, ym, wm = _f64(clip[b, vm, 0]), _f64(clip[b, vm, 1]), _f64(clip[b, vm, 3])
            ex = yj * wm - wj * ym
            ey = wj * xm - xj * wm
            ew = xj * ym - yj * xm
            # dL/dE_i: the sum plane, the z and w planes, and E1 / E2 themselves
            hx = acc[t, 6] + acc[t, 9] * zi + acc[t, 12] * wi
            hy = acc[t, 7] + acc[t, 10] * zi + acc[t, 13] * wi
            hw = acc[t, 8] + acc[t, 11] * zi + acc[t, 14] * wi
            if i == 1:
                hx += acc[t, 0]
                hy += acc[t, 1]
                hw += acc[t, 2]
            elif i == 2:
                hx += acc[t, 3]
                hy += acc[t, 4]
                hw += acc[t, 5]
            # z_i and w_i weight E_i in the z and w planes
            cuda.atomic.add(grad_clip, (b, vi, 2), acc[t, 9] * ex + acc[t, 10] * ey + acc[t, 11] * ew)
            cuda.atomic.add(grad_clip, (b, vi, 3), acc[t, 12] * ex + acc[t, 13] * ey + acc[t, 14] * ew)
            # E_i = V_j x V_m: dL/dV_j = V_m x H, dL/dV_m = H x V_j
            cuda.atomic.add(grad_clip, (b, vj, 0), ym * hw - wm * hy)
            cuda.atomic.add(grad_clip, (b, vj, 1), wm * hx - xm * hw)
            cuda.atomic.add(grad_clip, (b, vj, 3), xm * hy - ym * hx)
            cuda.atomic.add(grad_clip, (b, vm, 0), hy * wj - hw * yj)
            cuda.atomic.add(grad_clip, (b, vm, 1), hw * xj - hx * wj)
            cuda.atomic.add(grad_clip, (b, vm, 3), hx * yj - hy * xj)


def barycentrics_forward(
    clip: torch.Tensor, tris: torch.Tensor, tri_id: torch.Tensor, grad_db: bool
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[()]]:
    """rast, rast_db as raster_from_ids (and no saved state: backward recomputes).

    Args:
        clip: `[B,V,4]` float32/float64, CUDA (CPU under NUMBA_ENABLE_CUDASIM=1).
        tris: `[F,3]` int64, same device.
        tri_id: `[B,H,W]` int32, triangle id + 1 (0 = empty), same device.
        grad_db: also return rast_db.
    Returns:
        rast `[B,H,W,4]`, rast_db `[B,H,W,4]` or None, in clip's dtype; ().
    """
    n_b, h, w = tri_id.shape
    dev = clip.device
    rast = torch.zeros(n_b, h, w, 4, dtype=clip.dtype, device=dev)
    rast_db = torch.zeros_like(rast) if grad_db else None
    n_pix = n_b * h * w
    if tris.shape[0] == 0 or n_pix == 0:
        return rast, rast_db, ()
    # a separate placeholder, never rast itself: the simulator copies each argument back
    db_arg = rast_db if rast_db is not None else torch.zeros(1, 1, 1, 4, dtype=clip.dtype, device=dev)
    with launch(dev) as run:
        run(_forward_kernel, n_pix, clip.contiguous(), tris.contiguous(), tri_id.contiguous(),
            h, w, grad_db, rast, db_arg)
    return rast, rast_db, ()


def barycentrics_backward(
    clip: torch.Tensor,
    tris: torch.Tensor,
    tri_id: torch.Tensor,
    saved: tuple,
    grad_rast: torch.Tensor | None,
    grad_db: torch.Tensor | None,
) -> torch.Tensor:
    """Gradient of clip `[B,V,4]` (clip's dtype) from the gradients of rast and rast_db.

    Args:
        clip, tris, tri_id: as given to barycentrics_forward; saved: unused.
        grad_rast: `[B,H,W,4]` or None (zero); channel 3 (the ids) is ignored.
        grad_db: `[B,H,W,4]` or None (zero).
    """
    del saved
    n_b, h, w = tri_id.shape
    n_f = tris.shape[0]
    dev = clip.device
    grad_clip = torch.zeros_like(clip)
    n_pix = n_b * h * w
    if n_f == 0 or n_pix == 0 or (grad_rast is None and grad_db is None):
        return grad_clip
    g_rast = grad_rast.contiguous() if grad_rast is not None else grad_db.contiguous()
    g_db = grad_db.contiguous() if grad_db is not None else g_rast
    acc = torch.zeros(n_b * n_f, _NP, dtype=torch.float64, device=dev)
    clip, tris = clip.contiguous(), tris.contiguous()
    with launch(dev) as run:
        run(_pixel_grad_kernel, n_pix, clip, tris, tri_id.contiguous(), h, w,
            g_rast, grad_rast is not None, g_db, grad_db is not None, acc)
        run(_chain_kernel, n_b * n_f, clip, tris, acc, grad_clip)
    return grad_clip
