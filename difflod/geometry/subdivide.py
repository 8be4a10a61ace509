"""Midpoint subdivision: each triangle into four, every attribute on its own.

Triangle (a, b, c) with edge midpoints ab, bc, ca becomes
(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca): triangle i becomes
triangles 4i..4i+3, in every index buffer alike, so t_mat is repeated 4x.

Each attribute (positions, UVs, normals, tangents) is split with its own
index buffer: a midpoint is shared by the triangles that share that edge *in
that buffer*, so UV seams and hard normal edges stay split. Midpoint normals
are renormalised; midpoint tangents renormalised, their w taken from the
edge's first endpoint (endpoints of one tangent group agree).

Skinning: a midpoint's candidate influences are the union of both endpoints'
(up to 8) with weights 0.5 * w_a + 0.5 * w_b per joint; the four largest are
kept and renormalised to sum 1 (unused slots: weight 0).

Positions are new tensors built from the old by torch ops, so gradients
flow from the subdivided mesh back to the coarse positions.
"""

from __future__ import annotations

import torch

from difflod.geometry.normals import safe_normalize
from difflod.mesh import Mesh

__all__ = ["subdivide"]


def _split(values: torch.Tensor, tris: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                               torch.Tensor]:
    """Midpoint-split one attribute. Returns (new values, new tris [4F,3], edges [E,2])."""
    n = values.shape[0]
    tris = tris.long()
    ends = torch.stack([tris, tris.roll(-1, dims=1)], dim=2)      # [F,3,2]: ab, bc, ca
    undirected = torch.sort(ends.reshape(-1, 2), dim=1).values
    edges, inv = torch.unique(undirected, dim=0, return_inverse=True)
    mid = (n + inv).reshape(-1, 3)                                 # ab, bc, ca
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    ab, bc, ca = mid[:, 0], mid[:, 1], mid[:, 2]
    new = torch.stack([torch.stack([a, ab, ca], 1), torch.stack([b, bc, ab], 1),
                       torch.stack([c, ca, bc], 1), torch.stack([ab, bc, ca], 1)], dim=1)
    mids = 0.5 * (values[edges[:, 0]] + values[edges[:, 1]])
    return torch.cat([values, mids]), new.reshape(-1, 3), edges


def _merge_influences(joints: torch.Tensor, weights: torch.Tensor,
                      edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cand_j = torch.cat([joints[edges[:, 0]], joints[edges[:, 1]]], dim=1)          # [E,8]
    cand_w = 0.5 * torch.cat([weights[edges[:, 0]], weights[edges[:, 1]]], dim=1)  # [E,8]
    same = cand_j[:, :, None] == cand_j[:, None, :]                                # [E,8,8]
    total = (same * cand_w[:, None, :]).sum(-1)
    earlier = torch.tril(torch.ones(8, 8, dtype=torch.bool, device=joints.device), -1)
    first = ~(same & earlier).any(-1)
    score = torch.where(first, total, torch.full_like(total, -1.0))
    top_w, top_i = torch.topk(score, 4, dim=1)
    top_j = torch.gather(cand_j, 1, top_i)
    top_w = top_w.clamp_min(0.0)
    s = top_w.sum(1, keepdim=True)
    top_w = torch.where(s > 0, top_w / s.clamp_min(1e-30), top_w)
    return torch.cat([joints, top_j]), torch.cat([weights, top_w])


def subdivide(mesh: Mesh, steps: int = 1) -> Mesh:
    """Midpoint-subdivide `steps` times (triangle count x 4**steps).

    Args:
        mesh: the mesh; every attribute present is subdivided.
        steps: number of rounds, >= 0.
    Returns:
        A new Mesh; differentiable in positions, UVs, normals, tangents.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    for _ in range(steps):
        v_pos, t_pos_idx, edges = _split(mesh.v_pos, mesh.t_pos_idx)
        changes: dict[str, object] = {"v_pos": v_pos, "t_pos_idx": t_pos_idx}
        if mesh.v_tex is not None and mesh.t_tex_idx is not None:
            changes["v_tex"], changes["t_tex_idx"], _ = _split(mesh.v_tex, mesh.t_tex_idx)
        if mesh.v_nrm is not None and mesh.t_nrm_idx is not None:
            n0 = mesh.v_nrm.shape[0]
            vals, changes["t_nrm_idx"], _ = _split(mesh.v_nrm, mesh.t_nrm_idx)
            changes["v_nrm"] = torch.cat([vals[:n0], safe_normalize(vals[n0:])])
        if mesh.v_tng is not None and mesh.t_tng_idx is not None:
            n0 = mesh.v_tng.shape[0]
            vals, changes["t_tng_idx"], t_edges = _split(mesh.v_tng, mesh.t_tng_idx)
            mid = torch.cat([safe_normalize(vals[n0:, :3]), mesh.v_tng[t_edges[:, 0], 3:]], 1)
            changes["v_tng"] = torch.cat([mesh.v_tng, mid])
        if mesh.v_color is not None:
            changes["v_color"], _, _ = _split(mesh.v_color, mesh.t_pos_idx)
        if mesh.t_mat is not None:
            changes["t_mat"] = mesh.t_mat.repeat_interleave(4)
        if mesh.v_joints is not None and mesh.v_weights is not None:
            changes["v_joints"], changes["v_weights"] = _merge_influences(
                mesh.v_joints, mesh.v_weights, edges)
        mesh = mesh.replace(**changes)
    return mesh
