"""Per-vertex tangent frames following MikkTSpace's conventions.

Normal maps baked by Blender, Substance, xNormal or Marmoset use MikkTSpace;
shading them right needs the same tangent basis. This module follows its
rules (not its code) in vectorised torch, differentiable in the positions:

1. Per triangle, tangent T = dP/ds and bitangent B = dP/dt from the UV
   derivatives. (s, t) = (u, -v): difflod keeps glTF UVs, where v grows
   *down* the image (v=0 is the first stored row), while a tangent-space
   normal map's +Y (green, OpenGL/glTF/Blender convention) points *up* the
   image. So **T points toward +u and B toward -v** (toward the first texel
   row); equivalently B = dP/dv_blender with v_blender = 1 - v.
2. Per corner, T and B are projected onto the plane of that corner's normal,
   normalised, and added with the corner angle as weight.
3. Corners are grouped by the key (position index, UV index, normal index,
   orientation), orientation = sign(n . (T x B)): UV seams, hard edges and
   mirrored UV islands (w = -1) each get their own tangent, as MikkTSpace's
   vertex splitting does.
4. The summed tangent is Gram-Schmidt orthogonalised against the normal;
   handedness w = sign(dot(cross(n, t), b_sum)), so glTF's
   bitangent = w * cross(normal, tangent.xyz) reproduces B.
5. Triangles with degenerate UVs (zero UV area) contribute nothing; groups
   left with no tangent get a fallback unit vector orthogonal to the normal
   (the X axis projected, or Y when the normal is near X), w = +1.

The grouping of step 3 sorts the corner keys (`torch.unique`), whose output
size is known only on the device. A caller that renders the same triangles
many times (the trainer) builds `CornerGroups` once: the corners grouped by
(position, UV, normal index), which never change; each step then only adds
the orientation bit, group 2g or 2g+1, so the tangent table has a fixed
size 2G (groups no corner uses get the fallback tangent and are never
indexed). The tangents are the same; the step needs no host sync and can be
captured in a CUDA graph.

Not replicated: MikkTSpace's merging of identical vertices by value (difflod
groups by indices, which is what files give), and its special handling of
fully degenerate triangles beyond step 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from difflod.geometry.device_vector import vector
from difflod.geometry.normals import check_faces, check_positions, safe_normalize, with_normals
from difflod.mesh import Mesh

__all__ = ["CornerGroups", "vertex_tangents", "with_shading_frame", "with_tangents"]

_TINY = 1e-20


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1, keepdim=True)


@dataclass(frozen=True)
class CornerGroups:
    """The corners of a triangle list grouped by (position, UV, normal) index.

    Attributes:
        rows: `[G,3]` int64 (position, UV, normal) index of each group.
        inverse: `[F*3]` int64 group of each corner (corner-major: f*3 + k).
    """

    rows: torch.Tensor
    inverse: torch.Tensor

    @classmethod
    def of(cls, t_pos_idx: torch.Tensor, t_tex_idx: torch.Tensor,
           t_nrm_idx: torch.Tensor) -> CornerGroups:
        """Group the corners of `[F,3]` index triples (one sort; a host sync on a GPU)."""
        idx = [t.long() for t in (t_pos_idx, t_tex_idx, t_nrm_idx)]
        key = torch.stack(idx, dim=2).reshape(-1, 3)
        sizes = tuple(int(t.max()) + 1 if t.numel() else 1 for t in idx)
        rows, inverse = _unique_rows(key, sizes)
        return cls(rows=rows, inverse=inverse)


def vertex_tangents(v_pos: torch.Tensor, t_pos_idx: torch.Tensor, v_tex: torch.Tensor,
                    t_tex_idx: torch.Tensor, v_nrm: torch.Tensor,
                    t_nrm_idx: torch.Tensor, *, check: bool = True,
                    groups: CornerGroups | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """MikkTSpace-style tangents with handedness (`check`: the index ranges, a
    host sync on a GPU; False for a caller that validated the mesh).

    With `groups` (`CornerGroups.of` these index triples) the table has the
    fixed size 2G and the call makes no host sync (see the module docstring).

    Args:
        v_pos: `[V,3]` float positions; t_pos_idx `[F,3]` int.
        v_tex: `[T,2]` float UVs (glTF convention); t_tex_idx `[F,3]` int.
        v_nrm: `[N,3]` float unit normals; t_nrm_idx `[F,3]` int.
    Returns:
        v_tng `[K,4]` (xyz unit tangent toward +u, w = +-1), dtype of v_pos, and
        t_tng_idx `[F,3]` int64 into it; differentiable in v_pos and v_nrm.
    """
    check_positions("v_pos", v_pos)
    check_positions("v_tex", v_tex, 2)
    check_positions("v_nrm", v_nrm)
    n_tris = int(t_pos_idx.shape[0]) if isinstance(t_pos_idx, torch.Tensor) else 0
    check_faces("t_pos_idx", t_pos_idx, v_pos.shape[0] if check else None)
    check_faces("t_tex_idx", t_tex_idx, v_tex.shape[0] if check else None, n_tris)
    check_faces("t_nrm_idx", t_nrm_idx, v_nrm.shape[0] if check else None, n_tris)
    dtype = v_pos.dtype
    pi, ti, ni = t_pos_idx.long(), t_tex_idx.long(), t_nrm_idx.long()
    p = [v_pos.index_select(0, pi[:, k]) for k in range(3)]  # backward: index_add
    st = v_tex.to(dtype) * vector((1.0, -1.0), dtype, v_pos.device)
    uv = [st.index_select(0, ti[:, k]) for k in range(3)]
    nrm = v_nrm.to(dtype)
    n = [nrm.index_select(0, ni[:, k]) for k in range(3)]

    e1, e2 = p[1] - p[0], p[2] - p[0]
    d1, d2 = uv[1] - uv[0], uv[2] - uv[0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    valid = det.abs() > _TINY
    sgn = torch.where(det < 0, -1.0, 1.0).to(dtype)[:, None]
    # direction only (MikkTSpace normalises): multiply by sign(det) instead of dividing
    tan_f = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * sgn
    bit_f = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * sgn

    keys, t_acc, b_acc = [], [], []
    for k in range(3):
        a, b = p[(k + 1) % 3] - p[k], p[(k + 2) % 3] - p[k]
        c = torch.linalg.cross(a, b)
        angle = torch.atan2(torch.sqrt((c * c).sum(-1).clamp_min(_TINY)), (a * b).sum(-1))
        w = torch.where(valid, angle, torch.zeros_like(angle))[:, None]
        tc = safe_normalize(tan_f - _dot(n[k], tan_f) * n[k], eps=_TINY)
        bc = safe_normalize(bit_f - _dot(n[k], bit_f) * n[k], eps=_TINY)
        orient = _dot(n[k], torch.linalg.cross(tan_f, bit_f))[:, 0]
        orient = torch.where(valid & (orient < 0), -1, 1).to(torch.int64)
        keys.append(torch.stack([pi[:, k], ti[:, k], ni[:, k], orient], dim=1))
        t_acc.append(tc * w)
        b_acc.append(bc * w)
    key = torch.stack(keys, dim=1).reshape(-1, 4)                 # [F*3,4], corner-major
    if groups is None:
        uniq, inv = _unique_corners(key, v_pos.shape[0], v_tex.shape[0], v_nrm.shape[0])
    else:  # group 2g + (orientation > 0): a fixed-size table
        inv = groups.inverse * 2 + (key[:, 3] > 0).to(torch.int64)
        uniq = groups.rows.repeat_interleave(2, dim=0)
    t_corner = torch.stack(t_acc, dim=1).reshape(-1, 3)
    b_corner = torch.stack(b_acc, dim=1).reshape(-1, 3)
    k_count = uniq.shape[0]
    t_sum = torch.zeros(k_count, 3, dtype=dtype, device=v_pos.device).index_add(0, inv, t_corner)
    b_sum = torch.zeros(k_count, 3, dtype=dtype, device=v_pos.device).index_add(0, inv, b_corner)

    ng = nrm.index_select(0, uniq[:, 2])
    t = t_sum - _dot(ng, t_sum) * ng
    axis = torch.zeros_like(ng)
    near_x = ng[:, 0].abs() > 0.9
    axis[:, 0] = torch.where(near_x, 0.0, 1.0).to(dtype)
    axis[:, 1] = torch.where(near_x, 1.0, 0.0).to(dtype)
    fb = safe_normalize(axis - _dot(ng, axis) * ng, eps=_TINY)
    len2 = _dot(t, t)
    t_unit = torch.where(len2 > 1e-16, t * torch.rsqrt(len2.clamp_min(1e-16)), fb)
    hand = _dot(torch.linalg.cross(ng, t_unit), b_sum)[:, 0].detach()
    w_out = torch.where(hand < 0, -1.0, 1.0).to(dtype)
    v_tng = torch.cat([t_unit, w_out[:, None]], dim=1)
    return v_tng, inv.reshape(-1, 3)


def _unique_corners(key: torch.Tensor, n_pos: int, n_tex: int, n_nrm: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.unique(key, dim=0, return_inverse=True) for rows (pos, tex, nrm, orient +-1)."""
    bits = (key[:, 3] > 0).to(torch.int64)
    uniq, inv = _unique_rows(torch.cat([key[:, :3], bits[:, None]], dim=1),
                             (n_pos, n_tex, n_nrm, 2))
    return torch.cat([uniq[:, :3], uniq[:, 3:] * 2 - 1], dim=1), inv


def _unique_rows(key: torch.Tensor, sizes: tuple[int, ...]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.unique(key, dim=0, return_inverse=True) for `[N,C]` int64 rows with
    column c in [0, sizes[c]).

    The rows are packed into one int64 (mixed radix, same lexicographic
    order) and made unique as scalars: on the CPU, unique over rows compares
    them one pair at a time (~3 aten ops per row; 3,000 rows cost ~9,000 ops
    per training step), scalars are one sort. Rows whose packed range would
    not fit in int64 take torch's row-wise unique.
    """
    if math.prod(sizes) >= 2**62:
        return torch.unique(key, dim=0, return_inverse=True)
    code = key[:, 0]
    for c, size in enumerate(sizes[1:], start=1):
        code = code * size + key[:, c]
    uniq_code, inv = torch.unique(code, return_inverse=True)
    cols = []
    for size in reversed(sizes[1:]):
        cols.append(uniq_code % size)
        uniq_code = uniq_code // size
    cols.append(uniq_code)
    return torch.stack(cols[::-1], dim=1), inv


def with_tangents(mesh: Mesh) -> Mesh:
    """A copy of `mesh` with MikkTSpace-style tangents (normals computed first if missing).

    Raises:
        ValueError: if the mesh has no UVs.
    """
    v_tex, t_tex_idx = mesh.v_tex, mesh.t_tex_idx
    if v_tex is None or t_tex_idx is None:
        raise ValueError("mesh has no UVs (v_tex/t_tex_idx): tangents need texture coordinates")
    if mesh.v_nrm is None or mesh.t_nrm_idx is None:
        mesh = with_normals(mesh)
    v_nrm, t_nrm_idx = mesh.v_nrm, mesh.t_nrm_idx
    if v_nrm is None or t_nrm_idx is None:  # with_normals always sets them
        raise RuntimeError("normals missing after with_normals")
    v_tng, t_tng_idx = vertex_tangents(mesh.v_pos, mesh.t_pos_idx, v_tex, t_tex_idx,
                                       v_nrm, t_nrm_idx)
    return mesh.replace(v_tng=v_tng, t_tng_idx=t_tng_idx)


def with_shading_frame(mesh: Mesh) -> Mesh:
    """`mesh` with the normals and tangents difflod's renderer shades it with.

    Where the mesh has none, normals are computed as the renderer computes them
    (`with_normals`), and so are tangents when it has UVs (`with_tangents`);
    what the mesh has is kept. Writers use this so a file carries the very
    frame its normal maps were made in. Not differentiable (no_grad).
    """
    with torch.no_grad():
        if mesh.v_nrm is None or mesh.t_nrm_idx is None:
            mesh = with_normals(mesh.replace(v_tng=None, t_tng_idx=None))
        if mesh.has_uv and (mesh.v_tng is None or mesh.t_tng_idx is None):
            mesh = with_tangents(mesh)
    return mesh
