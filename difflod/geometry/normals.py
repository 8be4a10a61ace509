"""Face and vertex normals, differentiable in the positions.

Vertex normals are angle-weighted (Thürmer & Wüthrich): each triangle adds its
unit face normal times its corner angle at the vertex. This is independent of
the tessellation, unlike area weighting. Degenerate triangles add nothing;
vertices whose sum vanishes (isolated, or only degenerate triangles) get +Z.
No NaN appears in values or gradients: every square root and normalisation
is clamped away from zero.

The small argument checks used by the other geometry modules live here too.
"""

from __future__ import annotations

import torch

from difflod.geometry.device_vector import vector
from difflod.mesh import Mesh

__all__ = ["face_normals", "safe_normalize", "vertex_normals", "with_normals"]

_TINY = 1e-20


def check_positions(name: str, t: object, width: int = 3) -> torch.Tensor:
    """Raise ValueError unless `t` is a floating `[N,width]` tensor."""
    if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[1] != width \
            or not t.is_floating_point():
        got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a [N,{width}] float tensor, got {got}")
    return t


def check_faces(name: str, t: object, count: int | None,
                num_tris: int | None = None) -> torch.Tensor:
    """Raise ValueError unless `t` is an integer `[F,3]` tensor indexing `count` entries
    (count None: shape and dtype only, no read of the values)."""
    if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[1] != 3 \
            or t.dtype not in (torch.int32, torch.int64):
        got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a [F,3] int32/int64 tensor, got {got}")
    if num_tris is not None and t.shape[0] != num_tris:
        raise ValueError(f"{name} must have {num_tris} rows (one per triangle), got {t.shape[0]}")
    if count is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) >= count):
        raise ValueError(f"{name} holds indices outside [0,{count})")
    return t


def safe_normalize(v: torch.Tensor, fallback: torch.Tensor | None = None,
                   eps: float = 1e-12) -> torch.Tensor:
    """Unit vectors along the last axis; rows shorter than sqrt(eps) become `fallback`
    (zeros when None). Gradients stay finite everywhere."""
    len2 = (v * v).sum(-1, keepdim=True)
    unit = v * torch.rsqrt(len2.clamp_min(eps))
    if fallback is None:
        return torch.where(len2 > eps, unit, torch.zeros_like(unit))
    return torch.where(len2 > eps, unit, fallback.to(v).expand_as(unit))


def _corners(v_pos: torch.Tensor, t_pos_idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    idx = t_pos_idx.long()
    # index_select, not v_pos[idx]: its backward is one index_add, where advanced
    # indexing's is a sort-based index_put (on a GPU ~170 us of host time each)
    return tuple(v_pos.index_select(0, idx[:, k]) for k in range(3))


def face_normals(v_pos: torch.Tensor, t_pos_idx: torch.Tensor, *,
                 check: bool = True) -> torch.Tensor:
    """Unit face normals (counter-clockwise winding is front).

    Args:
        v_pos: `[V,3]` float positions.
        t_pos_idx: `[F,3]` int32/int64 triangles.
        check: check the index range (a host sync on a GPU); False for a caller
            that validated the mesh (the renderer, every training step).
    Returns:
        `[F,3]` same dtype as v_pos; degenerate triangles get +Z.
    """
    check_positions("v_pos", v_pos)
    check_faces("t_pos_idx", t_pos_idx, v_pos.shape[0] if check else None)
    p0, p1, p2 = _corners(v_pos, t_pos_idx)
    n = torch.linalg.cross(p1 - p0, p2 - p0)
    up = vector((0.0, 0.0, 1.0), v_pos.dtype, v_pos.device)
    return safe_normalize(n, up, eps=_TINY)


def vertex_normals(v_pos: torch.Tensor, t_pos_idx: torch.Tensor, *,
                   check: bool = True) -> torch.Tensor:
    """Angle-weighted smooth vertex normals.

    Args:
        v_pos: `[V,3]` float positions (float32, or float64 for gradcheck).
        t_pos_idx: `[F,3]` int32/int64 triangles.
        check: check the index range (a host sync on a GPU), as face_normals.
    Returns:
        `[V,3]` unit normals, same dtype/device as v_pos; +Z where undefined.
    """
    check_positions("v_pos", v_pos)
    check_faces("t_pos_idx", t_pos_idx, v_pos.shape[0] if check else None)
    idx = t_pos_idx.long()
    p = [v_pos.index_select(0, idx[:, k]) for k in range(3)]
    n = torch.linalg.cross(p[1] - p[0], p[2] - p[0])
    unit_n = safe_normalize(n, eps=_TINY)
    acc = torch.zeros_like(v_pos)
    for k in range(3):
        e1 = p[(k + 1) % 3] - p[k]
        e2 = p[(k + 2) % 3] - p[k]
        c = torch.linalg.cross(e1, e2)
        sin = torch.sqrt((c * c).sum(-1).clamp_min(_TINY))
        cos = (e1 * e2).sum(-1)
        angle = torch.atan2(sin, cos)
        acc = acc.index_add(0, idx[:, k], unit_n * angle[:, None])
    up = vector((0.0, 0.0, 1.0), v_pos.dtype, v_pos.device)
    return safe_normalize(acc, up, eps=_TINY)


def with_normals(mesh: Mesh) -> Mesh:
    """A copy of `mesh` with angle-weighted vertex normals (t_nrm_idx = t_pos_idx).

    Tangents, if any, are kept as they are; recompute them with
    `difflod.geometry.tangents.with_tangents` when the normals changed.
    """
    return mesh.replace(v_nrm=vertex_normals(mesh.v_pos, mesh.t_pos_idx),
                        t_nrm_idx=mesh.t_pos_idx)
