"""Differentiable attribute interpolation over a raster (nvdiffrast's `interpolate`).

Each covered pixel gets `(1-u-v) a0 + u a1 + v a2` from the three vertex
attributes of its triangle; empty pixels get 0. Gradients flow to the
attributes and to the raster's barycentrics (u, v), so vertex positions get
gradients through the rasterizer. Optionally the screen-space derivatives of
chosen channels are returned, by the chain rule through the raster's
barycentric derivatives `rast_db`.

The forward/backward pair is a small custom autograd Function: autograd of
the gather-based expression would keep the three gathered `[N,C]` attribute
rows alive for the backward pass; the Function keeps only indices and
barycentrics and gathers again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from difflod.render.backends import get_backend

__all__ = ["interpolate"]


class _InterpolateFn(torch.autograd.Function):
    """out[n] = (1-u-v) attr[idx[n,0]] + u attr[idx[n,1]] + v attr[idx[n,2]], masked."""

    @staticmethod
    def forward(ctx, attr: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                vidx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        a0, a1, a2 = attr[vidx[:, 0]], attr[vidx[:, 1]], attr[vidx[:, 2]]
        uc, vc = u.unsqueeze(-1), v.unsqueeze(-1)
        out = a0 + uc * (a1 - a0) + vc * (a2 - a0)
        out = out * valid.unsqueeze(-1).to(out.dtype)
        ctx.save_for_backward(attr, u, v, vidx, valid)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        attr, u, v, vidx, valid = ctx.saved_tensors
        grad = grad * valid.unsqueeze(-1).to(grad.dtype)
        g_attr = g_u = g_v = None
        if ctx.needs_input_grad[0]:
            g_attr = torch.zeros_like(attr)
            uc, vc = u.unsqueeze(-1), v.unsqueeze(-1)
            g_attr.index_add_(0, vidx[:, 0], grad * (1.0 - uc - vc))
            g_attr.index_add_(0, vidx[:, 1], grad * uc)
            g_attr.index_add_(0, vidx[:, 2], grad * vc)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            a0 = attr[vidx[:, 0]]
            if ctx.needs_input_grad[1]:
                g_u = (grad * (attr[vidx[:, 1]] - a0)).sum(-1)
            if ctx.needs_input_grad[2]:
                g_v = (grad * (attr[vidx[:, 2]] - a0)).sum(-1)
        return g_attr, g_u, g_v, None, None


def _check(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
           rast_db: torch.Tensor | None) -> None:
    if not isinstance(rast, torch.Tensor) or rast.dim() != 4 or rast.shape[-1] != 4 \
            or not rast.is_floating_point():
        raise ValueError(f"rast must be a float [B,H,W,4] tensor, got "
                         f"{_desc(rast)}")
    if not isinstance(attr, torch.Tensor) or attr.dim() not in (2, 3) \
            or not attr.is_floating_point():
        raise ValueError(f"attr must be a float [V,C] or [B,V,C] tensor, got {_desc(attr)}")
    if attr.dim() == 3 and attr.shape[0] not in (1, rast.shape[0]):
        raise ValueError(f"attr must be [B,V,C] with B = {rast.shape[0]} (rast's batch) or 1, "
                         f"got {tuple(attr.shape)}")
    if not isinstance(tris, torch.Tensor) or tris.dim() != 2 or tris.shape[-1] != 3 \
            or tris.is_floating_point() or tris.dtype == torch.bool:
        raise ValueError(f"tris must be an int32/int64 [F,3] tensor, got {_desc(tris)}")
    for name, t in (("attr", attr), ("tris", tris), ("rast_db", rast_db)):
        if t is not None and t.device != rast.device:
            raise ValueError(f"{name} is on {t.device} but rast is on {rast.device}; "
                             "all inputs must be on one device")
    if rast_db is not None and (rast_db.shape != rast.shape or not rast_db.is_floating_point()):
        raise ValueError(f"rast_db must be a float [B,H,W,4] tensor shaped like rast "
                         f"{tuple(rast.shape)}, got {_desc(rast_db)}")
    nv = attr.shape[-2]
    if tris.numel() and (int(tris.min()) < 0 or int(tris.max()) >= nv):
        raise ValueError(f"tris holds vertex indices outside [0, {nv}) (attr has {nv} vertices)")


def _desc(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} {tuple(t.shape)} on {t.device}"
    return type(t).__name__


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
                rast_db: torch.Tensor | None = None,
                diff_attrs: str | Sequence[int] | None = None, *,
                backend: str | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Interpolate per-vertex attributes over the raster.

    Args:
        attr: `[V,C]` (shared by all images) or `[B,V,C]` float attributes.
        rast: `[B,H,W,4]` float raster (u, v, z/w, triangle id + 1; 0 = empty),
            as returned by `rasterize`; gradients flow to its u and v channels.
        tris: `[F,3]` int32/int64 vertex indices into attr.
        rast_db: `[B,H,W,4]` float (du/dX, du/dY, dv/dX, dv/dY) in pixel units;
            needed when diff_attrs is given.
        diff_attrs: "all" or a list of channel indices whose screen-space
            derivatives to return.
        backend: "auto", "cpu", "cuda", "torch" or None (DIFFLOD_BACKEND, then
            auto); validated against rast's device.

    Returns:
        `(out, out_da)`: out `[B,H,W,C]` in attr's dtype (0 on empty pixels);
        out_da `[B,H,W,2*K]` = (d a_k/dX, d a_k/dY) for each of the K channels
        in diff_attrs, in order, or None when diff_attrs is None.
    """
    _check(attr, rast, tris, rast_db)
    get_backend(backend, rast.device)
    bsz, h, w, _ = rast.shape
    nv, nc = attr.shape[-2], attr.shape[-1]

    channels: list[int] | None = None
    if diff_attrs is not None:
        if isinstance(diff_attrs, str):
            if diff_attrs != "all":
                raise ValueError(f"diff_attrs must be 'all' or a list of channel indices, "
                                 f"got {diff_attrs!r}")
            channels = list(range(nc))
        else:
            channels = [int(c) for c in diff_attrs]
            if any(c < 0 or c >= nc for c in channels):
                raise ValueError(f"diff_attrs holds channel indices outside [0, {nc}): "
                                 f"{channels}")
        if rast_db is None:
            raise ValueError("diff_attrs needs rast_db ([B,H,W,4] from rasterize(grad_db=True))")

    tri_id = rast[..., 3].reshape(-1).to(torch.long) - 1
    valid = tri_id >= 0
    tidx = tris.to(torch.long)[tri_id.clamp(min=0)]  # [N,3]
    if attr.dim() == 3 and attr.shape[0] > 1:
        batch = torch.arange(bsz, device=rast.device).repeat_interleave(h * w)
        tidx = tidx + (batch * nv).unsqueeze(-1)
        flat_attr = attr.reshape(-1, nc)
    else:
        flat_attr = attr.reshape(nv, nc)
    u = rast[..., 0].reshape(-1).to(attr.dtype)
    v = rast[..., 1].reshape(-1).to(attr.dtype)
    out = _InterpolateFn.apply(flat_attr, u, v, tidx, valid).reshape(bsz, h, w, nc)

    if channels is None or rast_db is None:
        return out, None
    sel = flat_attr[:, channels]
    a0 = sel[tidx[:, 0]]
    d1, d2 = sel[tidx[:, 1]] - a0, sel[tidx[:, 2]] - a0  # [N,K]
    db = rast_db.reshape(-1, 4).to(attr.dtype)
    m = valid.unsqueeze(-1).to(attr.dtype)
    dx = (d1 * db[:, 0:1] + d2 * db[:, 2:3]) * m
    dy = (d1 * db[:, 1:2] + d2 * db[:, 3:4]) * m
    out_da = torch.stack((dx, dy), dim=-1).reshape(bsz, h, w, 2 * len(channels))
    return out, out_da
