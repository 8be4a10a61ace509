"""Differentiable rasterization: visibility from a backend, then the barycentrics.

The backend (difflod.render.backends) decides which triangle is nearest at
each pixel. For each covered pixel, the perspective-correct barycentrics
(u, v), z/w and, optionally, their screen-space derivatives are then
recomputed in float64 from the clip-space vertices of that triangle, by
`barycentrics`:

- backend "torch": `raster_from_ids`, plain torch; gradients with respect to
  clip_pos come from autograd. It is the reference the fused kernels are
  tested against.
- backends "cpu" and "cuda": fused kernels (backends/cpu_raster.py, numba;
  backends/cuda_raster.py, numba-cuda) under a custom autograd Function, with
  the same formulas; their backward gives the gradient of clip_pos directly.
  On "cpu", rasterize goes further: the visibility pass itself writes the
  barycentrics (cpu_raster.rasterize_forward), one pass over the image
  instead of two.

With V_i = (x_i, y_i, w_i) and the pixel centre p = (px, py, 1) in NDC,
e_i = (V_j x V_k) . p, and (u, v) = (e_1, e_2) / (e_0 + e_1 + e_2),
z/w = sum e_i z_i / sum e_i w_i.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from difflod.render.backends import get_backend

__all__ = ["barycentrics", "check_inputs", "raster_from_ids", "rasterize"]

MAX_RESOLUTION = 16384


def check_inputs(
    clip_pos: torch.Tensor, tris: torch.Tensor, resolution: Sequence[int], *,
    values: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Validate rasterize's inputs (`values`: also the finiteness of clip_pos and
    the index range of tris, one host sync on a GPU; False for a caller that
    checked them, such as a render captured in a CUDA graph).

    Returns:
        clip `[B,V,4]` (float32 or float64, as given), tris `[F,3]` int64 on the
        same device, H, W.
    Raises:
        ValueError naming the argument and what was expected.
    """
    if not isinstance(clip_pos, torch.Tensor):
        msg = f"clip_pos: expected a torch.Tensor [V,4] or [B,V,4], got {type(clip_pos).__name__}"
        raise ValueError(msg)  # noqa: TRY004 (house rule: ValueError for bad arguments)
    if clip_pos.dim() not in (2, 3) or clip_pos.shape[-1] != 4:
        raise ValueError(f"clip_pos: expected shape [V,4] or [B,V,4], got {list(clip_pos.shape)}")
    if clip_pos.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"clip_pos: expected dtype float32 (or float64), got {clip_pos.dtype}")
    if not isinstance(tris, torch.Tensor):
        msg = f"tris: expected a torch.Tensor [F,3] int32/int64, got {type(tris).__name__}"
        raise ValueError(msg)  # noqa: TRY004 (house rule: ValueError for bad arguments)
    if tris.dim() != 2 or tris.shape[1] != 3:
        raise ValueError(f"tris: expected shape [F,3], got {list(tris.shape)}")
    if tris.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"tris: expected dtype int32 or int64, got {tris.dtype}")
    if tris.device != clip_pos.device:
        raise ValueError(
            f"tris: expected device {clip_pos.device} (that of clip_pos), got {tris.device}"
        )
    if values:
        _check_values(clip_pos, tris)
    if (
        not isinstance(resolution, Sequence)
        or len(resolution) != 2
        or not all(isinstance(r, int) and not isinstance(r, bool) for r in resolution)
        or not all(1 <= r <= MAX_RESOLUTION for r in resolution)
    ):
        raise ValueError(
            f"resolution: expected (H, W), two ints in [1, {MAX_RESOLUTION}], got {resolution!r}"
        )
    clip = clip_pos if clip_pos.dim() == 3 else clip_pos[None]
    return clip, tris.long(), int(resolution[0]), int(resolution[1])


def _check_values(clip_pos: torch.Tensor, tris: torch.Tensor) -> None:
    """Finite positions and in-range indices (ValueError otherwise)."""
    # one device sync for all value checks (each int()/bool() on a GPU tensor is one)
    stats = [torch.isfinite(clip_pos).all().to(torch.int64)]
    if tris.numel():
        stats += [tris.min().to(torch.int64), tris.max().to(torch.int64)]
    vals = torch.stack(stats).tolist()
    if not vals[0]:
        raise ValueError("clip_pos: contains NaN or infinite values")
    n_verts = clip_pos.shape[-2]
    if tris.numel() and (vals[1] < 0 or vals[2] >= n_verts):
        raise ValueError(
            f"tris: indices must be in [0, {n_verts}) (clip_pos has {n_verts} vertices), "
            f"got range [{vals[1]}, {vals[2]}]"
        )


def raster_from_ids(
    clip: torch.Tensor, tris: torch.Tensor, tri_id: torch.Tensor, grad_db: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Build (rast, rast_db) differentiably from per-pixel triangle ids.

    Args:
        clip: `[B,V,4]` float32/float64 (may require grad).
        tris: `[F,3]` int64.
        tri_id: `[B,H,W]` int32, triangle id + 1 (0 = empty).
        grad_db: also return the screen-space derivatives.
    Returns:
        rast `[B,H,W,4]` (u, v, z/w, id + 1) in clip's dtype; rast_db
        `[B,H,W,4]` (du/dX, du/dY, dv/dX, dv/dY) per pixel, or None.
    """
    n_b, h, w = tri_id.shape
    n_f = tris.shape[0]
    dev, dtype = clip.device, clip.dtype
    flat = tri_id.reshape(-1).to(dev)
    idx = torch.nonzero(flat, as_tuple=True)[0]
    bi, rem = idx // (h * w), idx % (h * w)
    # the visible (image, triangle) pairs, without sorting: mark, then compact
    bf = bi * n_f + flat[idx].long() - 1
    seen = torch.zeros(n_b * n_f, dtype=torch.bool, device=dev)
    seen[bf] = True
    vis = torch.nonzero(seen, as_tuple=True)[0]
    slot = torch.cumsum(seen, 0) - 1
    # per visible triangle: E_i = V_j x V_k (x, y, w) and the planes of sum e_i,
    # sum z_i e_i and sum w_i e_i, so that each pixel needs only dot products
    n_v = clip.shape[1]
    vert_idx = ((vis // n_f)[:, None] * n_v + tris[vis % n_f]).reshape(-1)
    # index_select (not advanced indexing): its backward is index_add, no sort
    verts = clip.to(torch.float64).reshape(-1, 4).index_select(0, vert_idx).reshape(-1, 3, 4)
    vx, vy, vz, vw = verts.unbind(-1)  # each [T,3]
    edges = []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        edges.append(
            torch.stack(
                (
                    vy[:, j] * vw[:, k] - vw[:, j] * vy[:, k],
                    vw[:, j] * vx[:, k] - vx[:, j] * vw[:, k],
                    vx[:, j] * vy[:, k] - vy[:, j] * vx[:, k],
                ),
                dim=-1,
            )
        )
    e_sum = edges[0] + edges[1] + edges[2]
    z_pl = sum(edges[i] * vz[:, i, None] for i in range(3))
    w_pl = sum(edges[i] * vw[:, i, None] for i in range(3))
    table = torch.stack((edges[1], edges[2], e_sum, z_pl, w_pl), dim=1)  # [T,5,3]
    t = table.reshape(-1, 15).index_select(0, slot[bf]).reshape(-1, 5, 3)  # [K,5,3]
    px = (2.0 * (rem % w).to(torch.float64) + 1.0) / w - 1.0
    py = (2.0 * (rem // w).to(torch.float64) + 1.0) / h - 1.0
    p = torch.stack((px, py, torch.ones_like(px)), dim=-1)  # [K,3]
    # one batched product and one unbind: per-channel slicing of [K,...] tensors
    # would cost a full-size zero tensor each in backward
    if clip.is_cuda:
        # on a GPU a [K,5,3]x[K,3,1] float64 bmm runs as a tiny-tile GEMM (~5 ms fwd+bwd
        # per 8x512^2 batch on an H100); the elementwise form is memory-bound and faster
        prod = (t * p[:, None, :]).sum(-1)
    else:
        prod = torch.bmm(t, p[:, :, None])
    e1, e2, s, z_num, w_num = prod.reshape(-1, 5).unbind(-1)
    u = e1 / s
    v = e2 / s
    zw = z_num / w_num
    ids = flat[idx].to(torch.float64)
    vals = torch.stack((u, v, zw, ids), dim=-1).to(dtype)
    zeros = torch.zeros(n_b * h * w, 4, dtype=dtype, device=dev)
    rast = zeros.index_put((idx,), vals).reshape(n_b, h, w, 4)
    if not grad_db:
        return rast, None
    # d(e_i/s)/dp = (E_i s - e_i S) / s^2; dp/dX = 2/W, dp/dY = 2/H.
    s2 = s * s
    e1x, e1y, e2x, e2y, sx, sy = t[:, :3, :2].reshape(-1, 6).unbind(-1)
    du_dx = (e1x * s - e1 * sx) / s2 * (2.0 / w)
    du_dy = (e1y * s - e1 * sy) / s2 * (2.0 / h)
    dv_dx = (e2x * s - e2 * sx) / s2 * (2.0 / w)
    dv_dy = (e2y * s - e2 * sy) / s2 * (2.0 / h)
    db = torch.stack((du_dx, du_dy, dv_dx, dv_dy), dim=-1).to(dtype)
    rast_db = zeros.index_put((idx,), db).reshape(n_b, h, w, 4)
    return rast, rast_db


def _kernels(backend_name: str):
    """The fused kernel module of a backend: forward/backward functions."""
    if backend_name == "cpu":
        from difflod.render.backends import cpu_raster

        return cpu_raster
    from difflod.render.backends import cuda_raster

    return cuda_raster


def _cuda_kernels_usable(clip: torch.Tensor) -> bool:
    """Whether the numba-cuda kernels can take clip: numba.cuda importable, and
    CUDA tensors on a GPU or CPU tensors under numba's simulator."""
    from difflod.render.backends import cuda_launch

    return cuda_launch.available() and cuda_launch.SIM != clip.is_cuda


def _fused_forward(ctx, clip, tris, tri_id, backend_name, size, grad_db):
    """The two Functions' forward: (rast, rast_db or None) from the backend's kernels.

    tri_id None (only for "cpu", see rasterize) runs the visibility in the same
    pass (cpu_raster.rasterize_forward) at resolution size = (H, W); the ids it
    makes are saved for the backward like given ones.
    """
    kernels = _kernels(backend_name)
    if tri_id is None:
        tri_id, rast, rast_db, saved = kernels.rasterize_forward(clip, tris, *size, grad_db)
    else:
        rast, rast_db, saved = kernels.barycentrics_forward(clip, tris, tri_id, grad_db)
    ctx.kernels = kernels
    ctx.save_for_backward(clip, tris, tri_id, *saved)
    ctx.set_materialize_grads(False)
    return rast, rast_db


class _BarycentricsFn(torch.autograd.Function):
    """rast from the fused kernels; gradient of clip from the fused backward."""

    @staticmethod
    def forward(ctx, clip, tris, tri_id, backend_name, size):  # type: ignore[override]
        return _fused_forward(ctx, clip, tris, tri_id, backend_name, size, False)[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_rast):  # type: ignore[override]
        if grad_rast is None or not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        clip, tris, tri_id, *saved = ctx.saved_tensors
        grad = ctx.kernels.barycentrics_backward(clip, tris, tri_id, saved, grad_rast, None)
        return grad, None, None, None, None


class _BarycentricsDbFn(torch.autograd.Function):
    """(rast, rast_db) from the fused kernels; gradient of clip from both."""

    @staticmethod
    def forward(ctx, clip, tris, tri_id, backend_name, size):  # type: ignore[override]
        return _fused_forward(ctx, clip, tris, tri_id, backend_name, size, True)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_rast, grad_db):  # type: ignore[override]
        if (grad_rast is None and grad_db is None) or not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        clip, tris, tri_id, *saved = ctx.saved_tensors
        grad = ctx.kernels.barycentrics_backward(clip, tris, tri_id, saved, grad_rast, grad_db)
        return grad, None, None, None, None


def barycentrics(
    clip: torch.Tensor, tris: torch.Tensor, tri_id: torch.Tensor, grad_db: bool, backend_name: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(rast, rast_db) from per-pixel triangle ids, on the backend's path.

    "cpu" and "cuda" run the fused kernels (backends/cpu_raster.py,
    backends/cuda_raster.py) under a custom autograd Function; "torch" runs
    raster_from_ids, the reference. Arguments and results as raster_from_ids's,
    plus backend_name: the resolved backend name, "cpu", "cuda" or "torch".
    """
    if backend_name not in ("cpu", "cuda", "torch"):
        raise ValueError(f"backend_name: expected 'cpu', 'cuda' or 'torch', got {backend_name!r}")
    if backend_name == "torch" or (backend_name == "cuda" and not _cuda_kernels_usable(clip)):
        return raster_from_ids(clip, tris, tri_id, grad_db)
    tri_id = tri_id.to(device=clip.device, dtype=torch.int32).contiguous()
    return _apply(clip, tris, tri_id, backend_name, tuple(tri_id.shape[1:]), grad_db)


def _apply(clip, tris, tri_id, backend_name, size, grad_db):
    """Run the fused kernels' Function (tri_id None: visibility in the same pass)."""
    if grad_db:
        return _BarycentricsDbFn.apply(clip, tris, tri_id, backend_name, size)
    return _BarycentricsFn.apply(clip, tris, tri_id, backend_name, size), None


def rasterize(
    clip_pos: torch.Tensor,
    tris: torch.Tensor,
    resolution: Sequence[int],
    *,
    grad_db: bool = False,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rasterize triangles (nvdiffrast-like), differentiable w.r.t. clip_pos.

    Args:
        clip_pos: `[V,4]` or `[B,V,4]` float32 (float64 accepted, e.g. for
            gradcheck) OpenGL clip-space positions, clip = P @ V @ M @ [x,y,z,1].
        tris: `[F,3]` int32/int64 vertex indices, same device as clip_pos.
        resolution: (H, W), ints in [1, 16384].
        grad_db: also return the screen-space derivatives of (u, v).
        backend: "auto", "cpu", "cuda", "torch" or None (DIFFLOD_BACKEND, then auto).
    Returns:
        rast `[B,H,W,4]` in clip_pos's dtype = (u, v, z/w, triangle id + 1),
        0 everywhere on empty pixels; (u, v) are the perspective-correct
        barycentrics of vertices 1 and 2. Row 0 is the bottom row (NDC y = -1);
        pixel (x, y) has its centre at NDC ((2x+1)/W - 1, (2y+1)/H - 1).
        rast_db `[B,H,W,4]` = (du/dX, du/dY, dv/dX, dv/dY) per pixel, or None.
        Gradients flow from u, v, z/w (and rast_db) to clip_pos; ids are constant.
    Raises:
        ValueError: malformed arguments. difflod.errors.BackendError: the backend
        is unknown or cannot serve clip_pos's device.
    """
    clip, tris64, h, w = check_inputs(clip_pos, tris, resolution)
    be = get_backend(backend, clip.device)
    if be.name == "cpu" and tris64.shape[0] > 0:
        # one numba pass for visibility and barycentrics (backends/cpu.py)
        return _apply(clip, tris64, None, "cpu", (h, w), grad_db)
    if tris64.shape[0] == 0:
        tri_id = torch.zeros(clip.shape[0], h, w, dtype=torch.int32, device=clip.device)
    else:
        tri_id = be.visibility(
            clip.detach().to(torch.float32).contiguous(),
            tris64.to(torch.int32).contiguous(),
            h,
            w,
            None,
        )
    return barycentrics(clip, tris64, tri_id, grad_db, be.name)
