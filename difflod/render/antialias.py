"""Analytic antialiasing of silhouette edges (Laine et al. 2020, "Modular
Primitives for High-Performance Differentiable Rendering").

Rasterization decides visibility by point samples, so the rendered image is
piecewise constant in the vertex positions and their gradient is zero. This
op restores the missing visibility gradients. For every pair of horizontally
or vertically adjacent pixels whose triangle ids differ, the triangle in
front (smaller z/w, or the one that is not empty) is taken to cover pixel A
and not pixel B. If one of its silhouette edges (a boundary edge, or one
whose neighbour triangle lies on the same side of the edge in screen space)
crosses the segment from A's centre to B's centre, at fraction c (0 at A,
1 at B), then

- c > 1/2: the triangle covers (c - 1/2) of pixel B: B += (c - 1/2)(A - B);
- c < 1/2: (1/2 - c) of pixel A is not covered:   A += (1/2 - c)(B - A).

c is computed from the edge's projected end points, so gradients reach the
colours and, through c, the clip-space positions of the edge's vertices.
The discrete choices (pairs, front triangle, edge) are made without
gradient.

Backends (`backend=`, resolved by difflod.render.backends.get_backend):

- "torch": the plain-torch reference below (`_antialias_torch`): the pairs
  are gathered with masks and processed as flat tensors, and the blend is
  one `index_add` (autograd keeps only per-pair tensors). Any float dtype.
- "cpu": numba kernels (backends/cpu_antialias.py) behind `_AntialiasCpu`.
- "cuda": numba-cuda kernels (backends/cuda_antialias.py) behind
  `_AntialiasCuda`; the reference where numba's CUDA target is missing.

The fused paths (float32/float64; other dtypes use the reference) make the
reference's discrete choices with its arithmetic, so their outputs equal
the reference's; their gradients agree to rounding. They are once
differentiable. Validation of values is cheap: shapes, dtypes and devices
are checked here; vertex indices by one `aminmax` on the host (cpu, torch)
or a device flag (cuda), and triangle ids inside the kernels, so the cuda
path syncs with the host once per call (reading that flag) unless the
caller passes validate=False (the renderer does, having validated its mesh).
Speed: see the kernel modules' docstrings.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from difflod.render.backends import get_backend
from difflod.render.topology import Topology

__all__ = ["antialias"]


def _desc(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} {tuple(t.shape)} on {t.device}"
    return type(t).__name__


def _check(color, rast, clip_pos, tris, topology) -> None:
    if not isinstance(color, torch.Tensor) or color.dim() != 4 or not color.is_floating_point():
        raise ValueError(f"color must be a float [B,H,W,C] tensor, got {_desc(color)}")
    if not isinstance(rast, torch.Tensor) or rast.shape != color.shape[:3] + (4,) \
            or not rast.is_floating_point():
        raise ValueError(f"rast must be a float [B,H,W,4] tensor with color's B,H,W "
                         f"{tuple(color.shape[:3])}, got {_desc(rast)}")
    if not isinstance(clip_pos, torch.Tensor) or clip_pos.dim() not in (2, 3) \
            or clip_pos.shape[-1] != 4 or not clip_pos.is_floating_point():
        raise ValueError(f"clip_pos must be a float [V,4] or [B,V,4] tensor, got "
                         f"{_desc(clip_pos)}")
    if clip_pos.dim() == 3 and clip_pos.shape[0] not in (1, color.shape[0]):
        raise ValueError(f"clip_pos must be [B,V,4] with B = {color.shape[0]} or 1, "
                         f"got {tuple(clip_pos.shape)}")
    if not isinstance(tris, torch.Tensor) or tris.dim() != 2 or tris.shape[-1] != 3 \
            or tris.is_floating_point() or tris.dtype == torch.bool:
        raise ValueError(f"tris must be an int32/int64 [F,3] tensor, got {_desc(tris)}")
    for name, t in (("rast", rast), ("clip_pos", clip_pos), ("tris", tris)):
        if t.device != color.device:
            raise ValueError(f"{name} is on {t.device} but color is on {color.device}; "
                             "all inputs must be on one device")
    if topology is not None:
        if not isinstance(topology, Topology) or topology.tris.shape != tris.shape:
            raise ValueError(f"topology must be Topology.from_tris(tris) for these "
                             f"{tuple(tris.shape)} triangles")
        if topology.opposite.device != color.device:
            raise ValueError(f"topology is on {topology.opposite.device} but color is on "
                             f"{color.device}; use topology.to(device)")


def _tris_out_of_range(nv: int) -> ValueError:
    return ValueError(f"tris holds vertex indices outside [0, {nv}) "
                      f"(clip_pos has {nv} vertices)")


def _ids_out_of_range(n_tris: int) -> ValueError:
    return ValueError(f"rast holds triangle ids outside [0, {n_tris}] "
                      f"(id + 1 of the {n_tris} triangles of tris, 0 = empty)")


def _check_tris_range(tris: torch.Tensor, nv: int) -> None:
    """Host check of tris' values (one pass; a host sync on GPU tensors)."""
    if tris.numel():
        lo, hi = torch.aminmax(tris)
        if int(lo) < 0 or int(hi) >= nv:
            raise _tris_out_of_range(nv)


def _det3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """det of the rows (x, y, w) of three homogeneous points `[...,4]` -> `[...]`."""
    ax, ay, aw = a[..., 0], a[..., 1], a[..., 3]
    bx, by, bw = b[..., 0], b[..., 1], b[..., 3]
    cx, cy, cw = c[..., 0], c[..., 1], c[..., 3]
    return ax * (by * cw - bw * cy) - ay * (bx * cw - bw * cx) + aw * (bx * cy - by * cx)


def antialias(color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
              tris: torch.Tensor, *, topology: Topology | None = None,
              backend: str | None = None, validate: bool = True) -> torch.Tensor:
    """Blend colours across silhouette edges by their analytic coverage.

    Args:
        color: `[B,H,W,C]` float image (shaded from `rast`).
        rast: `[B,H,W,4]` float raster (u, v, z/w, triangle id + 1) from
            `rasterize(clip_pos, tris, ...)`.
        clip_pos: `[V,4]` or `[B,V,4]` float clip-space positions used for it.
        tris: `[F,3]` int32/int64 triangles used for it.
        topology: `Topology.from_tris(tris)`, to reuse across calls; built
            here when None.
        backend: "auto", "cpu", "cuda", "torch" or None (DIFFLOD_BACKEND, then
            auto); validated against color's device.
        validate: on the cuda path, read back the kernels' check of the index
            values (one GPU sync per call). False skips that read for inputs
            valid by construction (difflod's renderer passes False); the
            kernels never read out of range either way. The cpu and torch
            paths always check (no sync there).

    Returns:
        `[B,H,W,C]` antialiased image in color's dtype; differentiable with
        respect to color and clip_pos (not rast). The "cpu" and "cuda" paths
        are once differentiable; "torch" supports higher orders.

    Raises:
        ValueError: malformed arguments, vertex indices outside clip_pos, or
            triangle ids in rast outside [0, F].
        difflod.errors.BackendError: the backend is unknown or cannot serve
            color's device.
    """
    _check(color, rast, clip_pos, tris, topology)
    name = get_backend(backend, color.device).name
    nv = clip_pos.shape[-2]
    fused = color.dtype in (torch.float32, torch.float64) and (
        name == "cpu" or (name == "cuda" and _cuda_kernels_available()))
    if not (fused and name == "cuda"):
        _check_tris_range(tris, nv)  # the cuda kernels check on the device instead
    if topology is None:
        topology = Topology.from_tris(tris)
    if not fused:
        return _antialias_torch(color, rast, clip_pos, topology)
    return _fused(name, color, rast, clip_pos, topology, validate)


def _cuda_kernels_available() -> bool:
    from difflod.render.backends.cuda_launch import SIM, available

    return available() and not SIM


def _fused(name: str, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
           topology: Topology, validate: bool) -> torch.Tensor:
    """The fused path of backend `name` ("cpu" or "cuda"), inputs already checked."""
    clip = clip_pos.to(color.dtype)
    per_image = clip.dim() == 3 and clip.shape[0] > 1
    if name == "cpu":
        return _AntialiasCpu.apply(color, clip, rast, topology, per_image)
    return _AntialiasCuda.apply(color, clip, rast, topology, per_image, validate)


class _AntialiasCpu(torch.autograd.Function):
    """The fused CPU path: numba kernels of backends/cpu_antialias.py."""

    @staticmethod
    def forward(ctx, color, clip, rast, topology, per_image):  # type: ignore[override]
        from difflod.render.backends import cpu_antialias as kernels

        _, h, w, nc = color.shape
        color_c, clip_c, rast_c = (t.detach().contiguous() for t in (color, clip, rast))
        tris, opp = topology.tris.contiguous(), topology.opposite.contiguous()
        out, hits, bad = kernels.forward(
            color_c.reshape(-1, nc).numpy(), rast_c.reshape(-1, 4).numpy(),
            clip_c.reshape(-1, 4).numpy(), tris.numpy(), opp.numpy(),
            clip.shape[-2], per_image, h, w)
        if bad:
            raise _ids_out_of_range(tris.shape[0])
        ctx.save_for_backward(color_c, clip_c, rast_c)
        ctx.tris = tris
        ctx.record = (hits, per_image)
        return torch.from_numpy(out).reshape(color.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        from difflod.render.backends import cpu_antialias as kernels

        color, clip, rast = ctx.saved_tensors
        hits, per_image = ctx.record
        _, h, w, nc = color.shape
        g = grad.to(color.dtype).contiguous().reshape(-1, nc).numpy()
        g_color = g_clip = None
        if ctx.needs_input_grad[0]:
            g_color = torch.from_numpy(kernels.backward_color(g, hits, w))
            g_color = g_color.reshape(color.shape)
        if ctx.needs_input_grad[1]:
            g_clip = kernels.backward_clip(
                g, color.reshape(-1, nc).numpy(), rast.reshape(-1, 4).numpy(),
                clip.reshape(-1, 4).numpy(), ctx.tris.numpy(), hits,
                clip.shape[-2], per_image, h, w)
            g_clip = torch.from_numpy(g_clip).to(clip.dtype).reshape(clip.shape)
        return g_color, g_clip, None, None, None


class _AntialiasCuda(torch.autograd.Function):
    """The fused GPU path: numba-cuda kernels of backends/cuda_antialias.py."""

    @staticmethod
    def forward(ctx, color, clip, rast, topology, per_image, validate):  # type: ignore[override]
        from difflod.render.backends import cuda_antialias as kernels

        _, h, w, nc = color.shape
        color_c, clip_c, rast_c = (t.detach().contiguous() for t in (color, clip, rast))
        tris, opp = topology.tris.contiguous(), topology.opposite.contiguous()
        out, code, cov, flag = kernels.forward(
            color_c.reshape(-1, nc), rast_c.reshape(-1, 4), clip_c.reshape(-1, 4), tris, opp,
            clip.shape[-2], per_image, h, w)
        if validate:
            bad_ids, bad_tris = flag.tolist()  # the one host sync: validation of the values
            if bad_tris:
                raise _tris_out_of_range(clip.shape[-2])
            if bad_ids:
                raise _ids_out_of_range(tris.shape[0])
        ctx.save_for_backward(color_c, clip_c, rast_c, code, cov)
        ctx.tris = tris
        ctx.per_image = per_image
        return out.reshape(color.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        from difflod.render.backends import cuda_antialias as kernels

        color, clip, rast, code, cov = ctx.saved_tensors
        _, h, w, nc = color.shape
        g = grad.to(color.dtype).contiguous().reshape(-1, nc)
        g_color = g_clip = None
        if ctx.needs_input_grad[0]:
            g_color = kernels.backward_color(g, code, cov, h, w).reshape(color.shape)
        if ctx.needs_input_grad[1]:
            g_clip = kernels.backward_clip(
                g, color.reshape(-1, nc), rast.reshape(-1, 4), clip.reshape(-1, 4), ctx.tris,
                code, cov, clip.shape[-2], ctx.per_image, h, w).reshape(clip.shape)
        return g_color, g_clip, None, None, None, None


def _antialias_torch(color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                     topology: Topology) -> torch.Tensor:
    """The plain-torch reference (backend "torch"); see the module docstring."""
    bsz, h, w, nc = color.shape
    nv = clip_pos.shape[-2]
    n_tris = topology.tris.shape[0]
    color_flat = color.reshape(-1, nc)
    ids = rast[..., 3].detach().to(torch.long).reshape(-1)
    if ids.numel():
        lo, hi = torch.aminmax(ids)
        if int(lo) < 0 or int(hi) > n_tris:
            raise _ids_out_of_range(n_tris)
    depth = rast[..., 2].detach().reshape(-1)
    per_image = clip_pos.dim() == 3 and clip_pos.shape[0] > 1
    pos_flat = clip_pos.reshape(-1, 4)
    t_tris, t_opp = topology.tris, topology.opposite
    idm = ids.reshape(bsz, h, w)

    targets, deltas = [], []
    for axis in (0, 1):  # 0: horizontal pairs (along x), 1: vertical pairs (along y)
        if axis == 0:
            diff = idm[:, :, :-1] != idm[:, :, 1:]
            bi, yi, xi = diff.nonzero(as_tuple=True)
            step = 1
        else:
            diff = idm[:, :-1, :] != idm[:, 1:, :]
            bi, yi, xi = diff.nonzero(as_tuple=True)
            step = w
        if bi.numel() == 0:
            continue
        p0 = (bi * h + yi) * w + xi
        p1 = p0 + step
        id0, id1 = ids[p0], ids[p1]
        front0 = (id1 == 0) | ((id0 != 0) & (depth[p0] < depth[p1]))
        pa, pb = torch.where(front0, p0, p1), torch.where(front0, p1, p0)
        tri = torch.where(front0, id0, id1) - 1
        sign = torch.where(front0, 1.0, -1.0).to(color.dtype)  # direction A -> B along axis
        along_a = (xi if axis == 0 else yi).to(color.dtype) + (sign < 0).to(color.dtype)
        across = (yi if axis == 0 else xi).to(color.dtype)

        verts = t_tris[tri]                                    # [P,3]
        vbase = (bi * nv).unsqueeze(-1) if per_image else 0
        vidx = verts + vbase
        oidx = torch.where(t_opp[tri] >= 0, t_opp[tri] + vbase, -1)  # [P,3]
        with torch.no_grad():
            hv = pos_flat.detach()[vidx].to(color.dtype)        # [P,3,4]
            e0, e1, own = hv, hv[:, [1, 2, 0]], hv[:, [2, 0, 1]]
            nb = pos_flat.detach()[oidx.clamp(min=0)].to(color.dtype)
            s_own = _det3(e0, e1, own) * own[..., 3].sign()
            s_nb = _det3(e0, e1, nb) * nb[..., 3].sign()
            silhouette = (oidx < 0) | (s_own * s_nb > 0)
            in_front = (e0[..., 3] > 0) & (e1[..., 3] > 0)
            c = _crossing(e0, e1, axis, along_a.unsqueeze(-1), across.unsqueeze(-1),
                          sign.unsqueeze(-1), h, w)
            ok = silhouette & in_front & (c >= 0) & (c <= 1)
            hit = ok.any(dim=1)
            k = ok.to(torch.int8).argmax(dim=1)
        if not bool(hit.any()):
            continue
        sel = hit.nonzero(as_tuple=True)[0]
        ks = k[sel]
        vi = vidx[sel]
        a_idx = vi.gather(1, ks.unsqueeze(1)).squeeze(1)
        b_idx = vi.gather(1, ((ks + 1) % 3).unsqueeze(1)).squeeze(1)
        ea = pos_flat[a_idx].to(color.dtype)
        eb = pos_flat[b_idx].to(color.dtype)
        cc = _crossing(ea, eb, axis, along_a[sel], across[sel], sign[sel], h, w)
        ca, cb = color_flat[pa[sel]], color_flat[pb[sel]]
        beyond = (cc.detach() > 0.5).unsqueeze(-1)
        frac = (cc - 0.5).abs().unsqueeze(-1)
        targets.append(torch.where(beyond.squeeze(-1), pb[sel], pa[sel]))
        deltas.append(frac * torch.where(beyond, ca - cb, cb - ca))
    if not targets:
        return color.clone()
    out = color_flat.index_add(0, torch.cat(targets), torch.cat(deltas).to(color.dtype))
    return out.reshape(bsz, h, w, nc)


def _crossing(e0, e1, axis: int, along_a, across, sign, h: int, w: int) -> torch.Tensor:
    """Where edge e0-e1 crosses the segment from pixel A to B, as a fraction from A.

    e0, e1: `[...,4]` clip positions; along_a: A's pixel coordinate along the
    pair axis, across: the shared pixel coordinate, sign: +1 if B is at
    along_a + 1, -1 if at along_a - 1. Returns `[...]`; NaN/inf or values
    outside [0, 1] mean no crossing.
    """
    sx0 = (e0[..., 0] / e0[..., 3] + 1.0) * (0.5 * w) - 0.5
    sy0 = (e0[..., 1] / e0[..., 3] + 1.0) * (0.5 * h) - 0.5
    sx1 = (e1[..., 0] / e1[..., 3] + 1.0) * (0.5 * w) - 0.5
    sy1 = (e1[..., 1] / e1[..., 3] + 1.0) * (0.5 * h) - 0.5
    if axis == 0:
        l0, l1, q0, q1 = sx0, sx1, sy0, sy1
    else:
        l0, l1, q0, q1 = sy0, sy1, sx0, sx1
    straddle = (q0 > across) != (q1 > across)
    dq = torch.where(straddle, q1 - q0, torch.ones_like(q1))
    t = (across - q0) / dq
    hit_along = l0 + t * (l1 - l0)
    c = (hit_along - along_a) * sign
    return torch.where(straddle, c, torch.full_like(c, -1.0))
