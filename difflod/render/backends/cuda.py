"""GPU visibility in vectorized torch: (triangle, bbox pixel) pairs + atomic min.

A first GPU backend chosen for being right the first time rather than for
peak speed: it uses the very same float64 setup and per-pixel tests as the
torch_ref oracle (imported from it), but only over each triangle's bounding
box instead of the whole screen. All (triangle, pixel) pairs of all images
are enumerated in fixed-size ranges (searchsorted over the cumulative bbox
areas, so one huge triangle and many tiny ones are handled alike), and the
nearest fragment wins through scatter_reduce("amin") on a packed int64 key
(float32 depth bits, triangle id + 1) — the same tie rule as every backend.

Nothing CUDA-specific is imported; the algorithm runs on any device (the
tests run it on the CPU), and CudaBackend only refuses non-CUDA tensors.
A Triton/numba-cuda kernel can replace `visibility_pairs` later behind the
same interface.
"""

from __future__ import annotations

import torch

from difflod.render.backends.torch_ref import (
    EMPTY_KEY,
    depth_key,
    edge_inside,
    fragment_depth,
    keys_to_ids,
    pixel_centers,
    triangle_setup,
)

__all__ = ["CudaBackend", "visibility_pairs"]


def _bboxes(clip: torch.Tensor, tris: torch.Tensor, all_w_pos: torch.Tensor, h: int, w: int):
    """Inclusive pixel bboxes x0, x1, y0, y1 `[B*F]` int64 (whole screen where some w <= 0)."""
    v = clip[:, tris.long()].to(torch.float64)  # [B,F,3,4]
    safe_w = torch.where(all_w_pos[..., None], v[..., 3], torch.ones_like(v[..., 3]))
    sx = (v[..., 0] / safe_w + 1.0) * (0.5 * w) - 0.5
    sy = (v[..., 1] / safe_w + 1.0) * (0.5 * h) - 0.5
    x0 = (sx.amin(-1).floor() - 1).clamp(0, w)
    x1 = (sx.amax(-1).ceil() + 1).clamp(-1, w - 1)
    y0 = (sy.amin(-1).floor() - 1).clamp(0, h)
    y1 = (sy.amax(-1).ceil() + 1).clamp(-1, h - 1)
    x0 = torch.where(all_w_pos, x0, 0.0)
    x1 = torch.where(all_w_pos, x1, w - 1.0)
    y0 = torch.where(all_w_pos, y0, 0.0)
    y1 = torch.where(all_w_pos, y1, h - 1.0)
    return [t.reshape(-1).to(torch.int64) for t in (x0, x1, y0, y1)]


def visibility_pairs(
    clip: torch.Tensor,
    tris: torch.Tensor,
    h: int,
    w: int,
    depth_floor: torch.Tensor | None = None,
    *,
    budget: int = 1 << 22,
) -> torch.Tensor:
    """Triangle id + 1 per pixel by testing each triangle's bbox pixels.

    Args:
        clip: `[B,V,4]` float32 contiguous; tris `[F,3]` int32; h, w: resolution.
        depth_floor: `[B,H,W]` float32 or None; only fragments with depth > floor count.
        budget: (triangle, pixel) pairs evaluated at once (memory ~ 200 bytes each).
    Returns:
        `[B,H,W]` int32, triangle id + 1, 0 = empty.
    """
    n_b, n_f = clip.shape[0], tris.shape[0]
    dev = clip.device
    keys = torch.full((n_b * h * w,), EMPTY_KEY, dtype=torch.int64, device=dev)
    if n_f == 0:
        return keys_to_ids(keys).reshape(n_b, h, w)
    st = triangle_setup(clip[:, tris.long()])  # leading dims [B,F]
    x0, x1, y0, y1 = _bboxes(clip, tris, st.all_w_pos, h, w)
    bw = (x1 - x0 + 1).clamp(min=0)
    bh = (y1 - y0 + 1).clamp(min=0)
    counts = torch.where(st.valid.reshape(-1), bw * bh, 0)
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1])
    starts = ends - counts
    coef = st.coef.reshape(-1, 3, 3)
    incl = st.inclusive.reshape(-1, 3)
    dcoef = st.depth_coef.reshape(-1, 3)
    det = st.det.reshape(-1)
    px_all, py_all = pixel_centers(h, w, dev)
    floor = None if depth_floor is None else depth_floor.reshape(-1)
    for p0 in range(0, total, budget):
        pair = torch.arange(p0, min(total, p0 + budget), device=dev, dtype=torch.int64)
        inst = torch.searchsorted(ends, pair, right=True)
        off = pair - starts[inst]
        width = bw[inst]
        x = x0[inst] + off % width
        y = y0[inst] + off // width
        px, py = px_all[x], py_all[y]
        inside = edge_inside(coef[inst], incl[inst], px, py)
        d = fragment_depth(dcoef[inst], det[inst], px, py)
        inside &= (d >= -1.0) & (d <= 1.0)
        d32 = d.to(torch.float32)
        pix = (inst // n_f) * (h * w) + y * w + x
        if floor is not None:
            inside &= d32 > floor[pix]
        key = depth_key(d32, inst % n_f + 1)
        keys.scatter_reduce_(0, pix[inside], key[inside], reduce="amin", include_self=True)
    return keys_to_ids(keys).reshape(n_b, h, w)


class CudaBackend:
    """GPU visibility (vectorized torch over bbox pixels); serves CUDA tensors only."""

    name = "cuda"

    def supports(self, device: torch.device) -> str | None:
        """None for CUDA tensors when torch sees a GPU, else the reason."""
        if device.type != "cuda":
            return "the cuda backend needs CUDA tensors (use 'cpu' or 'torch' for CPU tensors)"
        if not torch.cuda.is_available():
            return "torch sees no CUDA device"
        return None

    def visibility(
        self,
        clip: torch.Tensor,
        tris: torch.Tensor,
        h: int,
        w: int,
        depth_floor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """See difflod.render.backends.Backend.visibility."""
        return visibility_pairs(clip, tris, h, w, depth_floor)
