"""Differentiable attribute interpolation over a raster (nvdiffrast's `interpolate`).

Each covered pixel gets `(1-u-v) a0 + u a1 + v a2` from the three vertex
attributes of its triangle; empty pixels get 0. Gradients flow to the
attributes and to the raster's barycentrics (u, v), so vertex positions get
gradients through the rasterizer. Optionally the screen-space derivatives of
chosen channels are returned, by the chain rule through the raster's
barycentric derivatives `rast_db`.

Two paths, chosen by the backend:

- "torch" (the reference, any device): a small custom autograd Function for
  out (autograd of the gather-based expression would keep the three gathered
  `[N,C]` attribute rows alive for the backward pass; the Function keeps
  only indices and barycentrics and gathers again) and plain autograd for
  out_da.
- "cpu" and "cuda": one fused autograd Function for out and out_da together,
  backed by a kernel pair (backends/cpu_interpolate.py: numba;
  backends/cuda_interpolate.py: numba-cuda) that does one pass per pixel
  forward and one backward. The "cuda" path falls back to the reference
  where numba's CUDA support is not importable.

Input checks cost one host sync per call (one combined index-range test).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

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


class _FusedFn(torch.autograd.Function):
    """(out `[N,C]`, out_da `[N,2K]`) by a backend's kernel pair; see _interpolate_fused."""

    @staticmethod
    def forward(ctx, attr: torch.Tensor, rast: torch.Tensor, rast_db: torch.Tensor | None,
                tris: torch.Tensor, channels: list[int], hw: int, img_rows: int,
                kernels: ModuleType) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, out_da, bad = kernels.forward(attr, rast, tris, rast_db, channels, hw, img_rows)
        ctx.save_for_backward(attr, rast, rast_db, tris)
        ctx.meta = (channels, hw, img_rows, kernels)
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(bad)
        if not channels:
            ctx.mark_non_differentiable(out_da)
        return out, out_da, bad

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out: torch.Tensor | None, g_da: torch.Tensor | None,  # type: ignore[override]
                 _g_bad: torch.Tensor | None):
        attr, rast, rast_db, tris = ctx.saved_tensors
        channels, hw, img_rows, kernels = ctx.meta
        needs = tuple(ctx.needs_input_grad[:3])
        if g_out is None and (g_da is None or not channels):
            return (None,) * 8
        g_out = None if g_out is None else g_out.contiguous()
        g_da = None if g_da is None or not channels else g_da.contiguous()
        g_attr, g_rast, g_db = kernels.backward(attr, rast, tris, rast_db, channels, hw,
                                                img_rows, g_out, g_da, needs)
        return g_attr, g_rast, g_db, None, None, None, None, None


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


def _check_indices(nv: int, tris: torch.Tensor, bad_ids: torch.Tensor) -> None:
    """Raise unless tris' vertex indices are in [0, nv) and bad_ids (0-dim) is 0.

    bad_ids counts (or flags) raster pixels whose triangle id + 1 is above F.
    One host sync for both tests.
    """
    flags = [bad_ids > 0]
    if tris.numel():
        lo, hi = torch.aminmax(tris)
        flags.append((lo < 0) | (hi >= nv))
    ids_bad, *tris_bad = torch.stack(flags).tolist()  # the one sync
    if any(tris_bad):
        raise ValueError(f"tris holds vertex indices outside [0, {nv}) (attr has {nv} vertices)")
    if ids_bad:
        nf = tris.shape[0]
        raise ValueError(f"rast holds triangle ids + 1 above {nf} (tris has {nf} triangles)")


def _desc(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} {tuple(t.shape)} on {t.device}"
    return type(t).__name__


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
                rast_db: torch.Tensor | None = None,
                diff_attrs: str | Sequence[int] | None = None, *,
                backend: str | None = None, validate: bool = True,
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
            auto); validated against rast's device. "cpu" and "cuda" run fused
            kernels, "torch" the plain-torch reference; all agree to rounding.
        validate: check the index values (tris against attr's vertices, the
            raster's ids against tris' count), which costs one GPU sync per
            call on CUDA. False skips that check on the fused paths, for
            inputs valid by construction (difflod's renderer passes False: its
            meshes are validated on load and its rasters come from
            `rasterize` with the same triangles); the kernels never read an
            out-of-range index, but pixels with one then stay 0 silently.
            The torch reference always checks.

    Returns:
        `(out, out_da)`: out `[B,H,W,C]` in attr's dtype (0 on empty pixels);
        out_da `[B,H,W,2*K]` = (d a_k/dX, d a_k/dY) for each of the K channels
        in diff_attrs, in order, or None when diff_attrs is None.

    Raises:
        ValueError: a malformed input, a vertex index of tris outside attr's
            vertices, or a raster triangle id above tris' count.
        BackendError: an unknown backend, or one that cannot serve rast's device.
    """
    _check(attr, rast, tris, rast_db)
    name = get_backend(backend, rast.device).name
    channels = _channels(diff_attrs, attr.shape[-1], rast_db)
    kernels = _kernels(name)
    if kernels is None:
        return _interpolate_torch(attr, rast, tris, rast_db, channels)
    return _interpolate_fused(attr, rast, tris, rast_db, channels, kernels, validate)


def _channels(diff_attrs: str | Sequence[int] | None, nc: int,
              rast_db: torch.Tensor | None) -> list[int] | None:
    """The channel indices of diff_attrs (None for None), validated."""
    if diff_attrs is None:
        return None
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
    return channels


def _kernels(name: str) -> ModuleType | None:
    """The kernel module of a backend name, or None for the torch reference."""
    if name == "cpu":
        from difflod.render.backends import cpu_interpolate

        return cpu_interpolate
    if name == "cuda":
        from difflod.render.backends import cuda_interpolate

        return cuda_interpolate if cuda_interpolate.available() else None
    return None


def _interpolate_fused(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
                       rast_db: torch.Tensor | None, channels: list[int] | None,
                       kernels: ModuleType, validate: bool,
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """interpolate by a kernel module (cpu_interpolate or cuda_interpolate) on valid inputs."""
    bsz, h, w, _ = rast.shape
    nv, nc = attr.shape[-2], attr.shape[-1]
    per_image = attr.dim() == 3 and attr.shape[0] > 1
    flat = attr.reshape(-1, nc).contiguous()
    r = rast.reshape(-1, 4).to(attr.dtype).contiguous()
    db = None
    if channels is not None:
        assert rast_db is not None
        db = rast_db.reshape(-1, 4).to(attr.dtype).contiguous()
    out, out_da, bad = _FusedFn.apply(flat, r, db, tris.contiguous(), channels or [], h * w,
                                      nv if per_image else 0, kernels)
    if validate:
        _check_indices(nv, tris, bad)  # the kernels read no out-of-range index; they count them
    out = out.reshape(bsz, h, w, nc)
    if channels is None:
        return out, None
    return out, out_da.reshape(bsz, h, w, 2 * len(channels))


def _interpolate_torch(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
                       rast_db: torch.Tensor | None, channels: list[int] | None,
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The plain-torch reference of interpolate."""
    bsz, h, w, _ = rast.shape
    nv, nc = attr.shape[-2], attr.shape[-1]
    nf = tris.shape[0]
    ids = rast[..., 3]
    _check_indices(nv, tris, (ids.amax() >= nf + 1) if ids.numel() else ids.new_zeros(()))
    tri_id = rast[..., 3].reshape(-1).to(torch.long) - 1
    valid = tri_id >= 0
    tris_l = tris.to(torch.long)
    if tris_l.shape[0] == 0:  # an empty mesh: every pixel is empty; gather a dummy triangle
        tris_l = tris_l.new_zeros(1, 3)
    tidx = tris_l[tri_id.clamp(min=0)]  # [N,3]
    if attr.dim() == 3 and attr.shape[0] > 1:
        batch = torch.arange(bsz, device=rast.device).repeat_interleave(h * w)
        tidx = tidx + (batch * nv).unsqueeze(-1)
        flat_attr = attr.reshape(-1, nc)
    else:
        flat_attr = attr.reshape(nv, nc)
    if flat_attr.shape[0] == 0:  # no vertices: the dummy triangle reads a zero row
        flat_attr = torch.cat([flat_attr, flat_attr.new_zeros(1, nc)])
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
