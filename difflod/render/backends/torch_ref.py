"""Plain-torch visibility: the slow, obviously correct oracle.

Every backend solves the same problem with the same float64 arithmetic, so
their triangle ids agree bit for bit (tests hold cpu and cuda to this one):

- Homogeneous 2D rasterization (Olano & Greer 1997). With V_i = (x_i, y_i, w_i)
  and pixel p = (px, py, 1) in NDC, e_i = (V_j x V_k) . p for (i, j, k) a
  cyclic permutation of (0, 1, 2), det = V_0 . (V_1 x V_2). A pixel is covered
  iff every e_i / det > 0, which draws exactly the w > 0 part of a triangle
  (no explicit clipping). Depth z/w = (sum z_i e_i) / det.
- Fill rule: each edge's cross product is taken with its endpoints in a
  canonical order (lexicographic on (x, y, w)), so two triangles sharing an
  edge get exactly opposite values (IEEE negation is exact, and
  a x b = -(b x a) exactly). A pixel exactly on an edge (e == 0) belongs to
  the triangle for which (canonical direction * sign(det)) is positive. Using
  positions rather than vertex indices for the order also makes UV seams
  (duplicated vertices) watertight.
- Near/far: fragments outside -1 <= z/w <= 1 are discarded. Depth test on
  float32(z/w) (with -0 made +0); ties go to the smaller triangle id.

`triangle_setup` and `pixel_centers` are shared with the cuda backend; the
numba cpu backend repeats the same operations in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "EMPTY_KEY",
    "TorchBackend",
    "TriangleSetup",
    "depth_key",
    "edge_inside",
    "fragment_depth",
    "fragment_depth32",
    "fragment_test",
    "keys_to_ids",
    "pixel_centers",
    "triangle_setup",
    "visibility",
]

EMPTY_KEY = 2**63 - 1  # key of an empty pixel: larger than any fragment key


@dataclass(frozen=True)
class TriangleSetup:
    """Per-triangle coefficients (all float64, leading dims `[...]` = the triangles').

    Attributes:
        coef: `[..., 3, 3]` edge coefficients D_i = (a, b, c), pixel inside
            edge i iff a*px + b*py + c > 0 (or == 0 where `inclusive`).
        inclusive: `[..., 3]` bool, the fill rule for e == 0.
        depth_coef: `[..., 3]` N = sum z_i E_i; z/w = (N . p) / det.
        det: `[...]` V_0 . (V_1 x V_2).
        valid: `[...]` bool, det != 0.
        all_w_pos: `[...]` bool, all three w > 0 (the projected bbox is usable).
    """

    coef: torch.Tensor
    inclusive: torch.Tensor
    depth_coef: torch.Tensor
    det: torch.Tensor
    valid: torch.Tensor
    all_w_pos: torch.Tensor


def _cross(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(x, y, w) cross product, [..., 3] float64; same operation order as cpu.py."""
    lx, ly, lw = lo.unbind(-1)
    hx, hy, hw = hi.unbind(-1)
    return torch.stack((ly * hw - lw * hy, lw * hx - lx * hw, lx * hy - ly * hx), dim=-1)


def triangle_setup(verts: torch.Tensor) -> TriangleSetup:
    """Edge, depth and fill-rule coefficients of triangles.

    Args:
        verts: `[..., 3, 4]` clip-space vertices of each triangle (any float
            dtype; converted to float64 — pass float32 values for results
            identical to the kernels).
    """
    v = verts.to(torch.float64)
    xyw = torch.cat([v[..., 0:2], v[..., 3:4]], dim=-1)  # no index list: a host copy on a GPU
    z = v[..., 2]
    edges = []
    signs = []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        a, b = xyw[..., j, :], xyw[..., k, :]
        ax, ay, aw = a.unbind(-1)
        bx, by, bw = b.unbind(-1)
        j_first = (ax < bx) | ((ax == bx) & ((ay < by) | ((ay == by) & (aw <= bw))))
        lo = torch.where(j_first[..., None], a, b)
        hi = torch.where(j_first[..., None], b, a)
        s = torch.where(j_first, 1.0, -1.0).to(torch.float64)
        edges.append(_cross(lo, hi) * s[..., None])
        signs.append(s)
    e0, e1, e2 = edges
    x0, y0, w0 = xyw[..., 0, :].unbind(-1)
    det = (x0 * e0[..., 0] + y0 * e0[..., 1]) + w0 * e0[..., 2]
    sgn = torch.sign(det)
    coef = torch.stack([e * sgn[..., None] for e in edges], dim=-2)
    inclusive = torch.stack([s * sgn > 0 for s in signs], dim=-1)
    depth_coef = (z[..., 0, None] * e0 + z[..., 1, None] * e1) + z[..., 2, None] * e2
    return TriangleSetup(
        coef=coef,
        inclusive=inclusive,
        depth_coef=depth_coef,
        det=det,
        valid=det != 0,
        all_w_pos=(xyw[..., 2] > 0).all(dim=-1),
    )


def pixel_centers(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """NDC pixel centres: px `[W]`, py `[H]` float64, (2x+1)/W - 1 (row 0 = bottom)."""
    px = (2.0 * torch.arange(w, dtype=torch.float64, device=device) + 1.0) / w - 1.0
    py = (2.0 * torch.arange(h, dtype=torch.float64, device=device) + 1.0) / h - 1.0
    return px, py


def edge_inside(
    coef: torch.Tensor, inclusive: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> torch.Tensor:
    """Coverage test. coef `[..., 3, 3]`, inclusive `[..., 3]`, px/py broadcastable to `[...]`."""
    inside = None
    for i in range(3):
        val = (coef[..., i, 0] * px + coef[..., i, 1] * py) + coef[..., i, 2]
        ok = (val > 0) | ((val == 0) & inclusive[..., i])
        inside = ok if inside is None else inside & ok
    return inside


def fragment_depth(
    depth_coef: torch.Tensor, det: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> torch.Tensor:
    """z/w in float64 with -0 made +0; shapes as in `edge_inside`."""
    d = ((depth_coef[..., 0] * px + depth_coef[..., 1] * py) + depth_coef[..., 2]) / det
    return torch.where(d == 0, torch.zeros_like(d), d)


def depth_key(d32: torch.Tensor, tri_id: torch.Tensor) -> torch.Tensor:
    """Order-preserving int64 key (float32 depth bits, triangle id + 1): min = nearest, then smallest id."""
    bits = d32.contiguous().view(torch.int32).to(torch.int64)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return (bits << 32) | tri_id.to(torch.int64)


def keys_to_ids(keys: torch.Tensor) -> torch.Tensor:
    """int64 keys → int32 triangle id + 1 (0 where empty)."""
    ids = keys & 0xFFFFFFFF
    return torch.where(keys == EMPTY_KEY, torch.zeros_like(ids), ids).to(torch.int32)


def fragment_test(
    coef: torch.Tensor,
    inclusive: torch.Tensor,
    depth_coef: torch.Tensor,
    det: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(covered, float32 depth) of pixels: the edge test with the fill rule, the
    near/far clip (-1 <= z/w <= 1), and the depth the kernels compare. Shapes as
    in `edge_inside`."""
    inside = edge_inside(coef, inclusive, px, py)
    d = fragment_depth(depth_coef, det, px, py)
    inside &= (d >= -1.0) & (d <= 1.0)
    return inside, d.to(torch.float32)


def fragment_depth32(clip: torch.Tensor, tris: torch.Tensor, tri_id: torch.Tensor, *,
                     dense: bool = False) -> torch.Tensor:
    """The float32 depth the kernels used for each visible fragment; +inf where empty.

    Args:
        clip: `[B,V,4]` float32; tris `[F,3]` int; tri_id `[B,H,W]` int32 (id + 1).
        dense: evaluate every pixel (an empty one with triangle 0) and keep the
            visible ones: fixed shapes and no host sync (a CUDA-graph capture),
            the same bits; otherwise only the visible pixels are evaluated.
    Returns:
        `[B,H,W]` float32, bit-identical to the depth every backend compares.
    """
    b_, h, w = tri_id.shape
    out = torch.full((b_ * h * w,), float("inf"), dtype=torch.float32, device=clip.device)
    flat = tri_id.reshape(-1)
    if dense:
        if tris.shape[0] == 0:
            return out.reshape(b_, h, w)
        idx = torch.arange(flat.shape[0], device=clip.device)
        f = (flat.long() - 1).clamp_min(0)
    else:
        idx = torch.nonzero(flat, as_tuple=True)[0]
        if idx.numel() == 0:
            return out.reshape(b_, h, w)
        f = flat[idx].long() - 1
    bi, rem = idx // (h * w), idx % (h * w)
    verts = clip.detach().float()[bi[:, None], tris.long()[f]]
    st = triangle_setup(verts)
    px, py = pixel_centers(h, w, clip.device)
    d = fragment_depth(st.depth_coef, st.det, px[rem % w], py[rem // w]).to(torch.float32)
    if dense:
        return torch.where(flat > 0, d, out).reshape(b_, h, w)
    out[idx] = d
    return out.reshape(b_, h, w)


def visibility(
    clip: torch.Tensor,
    tris: torch.Tensor,
    h: int,
    w: int,
    depth_floor: torch.Tensor | None = None,
    *,
    budget: int = 1 << 21,
) -> torch.Tensor:
    """Triangle id + 1 per pixel, testing chunks of triangles against every pixel.

    Args:
        clip: `[B,V,4]` float32 contiguous; tris `[F,3]` int32; h, w: resolution.
        depth_floor: `[B,H,W]` float32 or None; only fragments with depth > floor count.
        budget: max (batch x triangles x pixels) evaluated at once.
    Returns:
        `[B,H,W]` int32, triangle id + 1, 0 = empty.
    """
    b_ = clip.shape[0]
    n_tris = tris.shape[0]
    dev = clip.device
    keys = torch.full((b_, h * w), EMPTY_KEY, dtype=torch.int64, device=dev)
    if n_tris == 0:
        return keys_to_ids(keys).reshape(b_, h, w)
    px, py = pixel_centers(h, w, dev)
    pxg = px.repeat(h)
    pyg = py.repeat_interleave(w)
    floor = None if depth_floor is None else depth_floor.reshape(b_, 1, h * w)
    chunk = max(1, budget // (b_ * h * w))
    tl = tris.long()
    for f0 in range(0, n_tris, chunk):
        f1 = min(n_tris, f0 + chunk)
        st = triangle_setup(clip[:, tl[f0:f1]])  # [B,Fc,...]
        inside, d32 = fragment_test(st.coef[..., None, :, :], st.inclusive[..., None, :],
                                    st.depth_coef[..., None, :], st.det[..., None], pxg, pyg)
        inside &= st.valid[..., None]
        if floor is not None:
            inside &= d32 > floor
        ids = torch.arange(f0 + 1, f1 + 1, device=dev).view(1, -1, 1)
        key = torch.where(inside, depth_key(d32, ids.expand_as(d32)), EMPTY_KEY)
        keys = torch.minimum(keys, key.amin(dim=1))
    return keys_to_ids(keys).reshape(b_, h, w)


class TorchBackend:
    """The plain-torch oracle; serves any device."""

    name = "torch"

    def supports(self, device: torch.device) -> str | None:
        """None if this backend can serve tensors on `device`, else the reason."""
        return None

    def visibility(
        self,
        clip: torch.Tensor,
        tris: torch.Tensor,
        h: int,
        w: int,
        depth_floor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """See `visibility`."""
        return visibility(clip, tris, h, w, depth_floor)
