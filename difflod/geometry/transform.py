"""Rigid/affine transforms of a whole Mesh, and nvdiffmodeling's normalisations.

- `transform(mesh, M)`: positions by M (homogeneous, divided by w), normals by
  the inverse-transpose of M's 3x3 part (renormalised), tangents by the 3x3
  part (renormalised) with handedness w flipped when det < 0 (a mirror), so
  that bitangent = w * cross(n, t) still points where the transformed
  bitangent does. A skin is conjugated (S' = M S M^-1) so skinning the
  transformed bind pose gives the transformed pose.
- `unit_size`: nvdiffmodeling's `mesh.unit_size`: centre the AABB on the
  origin and scale so its longest side is 2. The centre and scale are
  constants (no gradient flows into them), as nvdiffmodeling computes them
  under no_grad.
- `center_by_reference`: nvdiffmodeling's: v' = (v - c_ref) * scale / max
  side of the reference AABB; used every step to bring the trained mesh and
  the reference into the same render space.
"""

from __future__ import annotations

import dataclasses

import torch

from difflod.geometry.normals import safe_normalize
from difflod.mesh import Mesh

__all__ = ["center_by_reference", "reference_matrix", "transform", "unit_size"]


def _check_matrix(matrix: object) -> torch.Tensor:
    if not isinstance(matrix, torch.Tensor) or matrix.shape != (4, 4) \
            or not matrix.is_floating_point():
        got = f"{tuple(matrix.shape)} {matrix.dtype}" if isinstance(matrix, torch.Tensor) \
            else type(matrix).__name__
        raise ValueError(f"matrix must be a [4,4] float tensor, got {got}")
    if not torch.isfinite(matrix).all():
        raise ValueError("matrix holds NaN or Inf")
    return matrix


def transform(mesh: Mesh, matrix: torch.Tensor) -> Mesh:
    """Apply a 4x4 transform (column vectors: p' = M @ [p,1]) to a mesh.

    Args:
        mesh: the mesh.
        matrix: `[4,4]` float tensor; its 3x3 part must be invertible.
    Returns:
        A new Mesh; positions differentiable w.r.t. mesh.v_pos and matrix.
    """
    _check_matrix(matrix)
    m = matrix.to(device=mesh.v_pos.device, dtype=mesh.v_pos.dtype)
    lin = m[:3, :3]
    det = torch.linalg.det(lin.detach().double())
    if abs(float(det)) < 1e-30:
        raise ValueError("matrix: its 3x3 part is singular (cannot transform normals)")
    hom = mesh.v_pos @ m[:3, :3].T + m[:3, 3]
    w = mesh.v_pos @ m[3, :3] + m[3, 3]
    if not bool(torch.all(m[3] == torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype,
                                               device=m.device))):
        hom = hom / w[:, None]
    changes: dict[str, object] = {"v_pos": hom}
    if mesh.v_nrm is not None:
        nrm_m = torch.linalg.inv(lin).T
        changes["v_nrm"] = safe_normalize(mesh.v_nrm @ nrm_m.T.to(mesh.v_nrm.dtype))
    if mesh.v_tng is not None:
        t = safe_normalize(mesh.v_tng[:, :3] @ lin.T.to(mesh.v_tng.dtype))
        sign = 1.0 if float(det) > 0 else -1.0
        changes["v_tng"] = torch.cat([t, mesh.v_tng[:, 3:] * sign], dim=1)
    if mesh.skin is not None:
        s = mesh.skin.matrices
        ms = m.detach().to(s)
        changes["skin"] = dataclasses.replace(mesh.skin, matrices=ms @ s @ torch.linalg.inv(ms))
    return mesh.replace(**changes)


def unit_size(mesh: Mesh) -> Mesh:
    """Centre the AABB on the origin and scale uniformly so its longest side is 2.

    Raises:
        ValueError: if the mesh is empty or has zero extent.
    """
    if mesh.num_vertices == 0:
        raise ValueError("mesh: unit_size needs at least one vertex")
    lo, hi = (x.detach() for x in mesh.aabb())
    extent = float((hi - lo).max())
    if not extent > 0:
        raise ValueError("mesh: unit_size needs a mesh with non-zero extent")
    return center_by_reference(mesh, (lo, hi), 2.0)


def reference_matrix(ref_aabb: tuple[torch.Tensor, torch.Tensor], scale: float) -> torch.Tensor:
    """`[4,4]` float64 matrix of nvdiffmodeling's centring (see center_by_reference).

    Raises:
        ValueError: ref_aabb is not a pair of [3] tensors, or has zero extent.
    """
    if not isinstance(ref_aabb, (tuple, list)) or len(ref_aabb) != 2 \
            or any(not isinstance(x, torch.Tensor) or x.shape != (3,) for x in ref_aabb):
        raise ValueError("ref_aabb must be a pair of [3] tensors (min, max)")
    lo, hi = (x.detach().to("cpu", torch.float64) for x in ref_aabb)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise ValueError("ref_aabb must have non-zero extent")
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] *= float(scale) / extent
    m[:3, 3] = -(lo + hi) * 0.5 * (float(scale) / extent)
    return m


def center_by_reference(mesh: Mesh, ref_aabb: tuple[torch.Tensor, torch.Tensor],
                        scale: float) -> Mesh:
    """nvdiffmodeling's centring: v' = (v - centre(ref_aabb)) * scale / max side(ref_aabb).

    Args:
        mesh: mesh to move (e.g. the trained base mesh, or the reference itself).
        ref_aabb: `([3], [3])` min and max corners of the reference bounds.
        scale: target size of the reference's longest side (nvdiffmodeling's
            `mesh_scale`, typically 2.0 -> the reference fits [-1,1]).
    """
    return transform(mesh, reference_matrix(ref_aabb, scale).to(mesh.v_pos))
