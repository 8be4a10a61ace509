"""A base mesh with the normals and tangents the renderer computes, its normal map matched.

`difflod simplify` brings the bake's tangent-space normal map to the tangent
frame the renderer computes (MikkTSpace-style, geometry/tangents.py) before
training: training recomputes tangents every step and OBJ files carry none, so a
map baked against other tangents would start the run below the baseline.
bake.py currently builds its bitangent toward +v where geometry/tangents.py
builds it toward -v (glTF's convention), which flips the map's green channel;
`match_render_tangents` detects that by comparing handedness and undoes it
(and does nothing once the two agree).
"""

from __future__ import annotations

import dataclasses

import torch

from difflod.mesh import Mesh

__all__ = ["match_render_tangents"]


def match_render_tangents(mesh: Mesh) -> Mesh:
    """The same model, with the normals and tangents the renderer would compute.

    Drops `mesh`'s stored normals and tangents, recomputes them as the
    renderer and the trainer do (geometry.normals / geometry.tangents), and
    flips the green (Y) channel of the first material's normal map when most
    triangle corners' handedness disagrees between the stored and the fresh
    tangents (a map baked with the other bitangent direction).

    Args:
        mesh: a mesh with UVs; stored tangents `[T,4]` (w = +-1) if its normal
            map was baked against them.
    Returns:
        A new Mesh with v_nrm `[V,3]`, v_tng `[K,4]` float32 and their indices.
    """
    from difflod.geometry.tangents import with_tangents

    fresh = with_tangents(mesh.replace(v_nrm=None, t_nrm_idx=None, v_tng=None,
                                       t_tng_idx=None))
    mat = mesh.materials[0]
    if mat.normal is None or mesh.v_tng is None or mesh.t_tng_idx is None:
        return fresh
    assert fresh.v_tng is not None and fresh.t_tng_idx is not None  # set by with_tangents
    old_w = mesh.v_tng[mesh.t_tng_idx][..., 3]
    new_w = fresh.v_tng[fresh.t_tng_idx][..., 3]
    if float((old_w * new_w < 0).float().mean()) <= 0.5:
        return fresh
    flip = torch.tensor([1.0, -1.0, 1.0], dtype=mat.normal.dtype, device=mat.normal.device)
    flipped = dataclasses.replace(mat, normal=mat.normal * flip)
    return fresh.replace(materials=(flipped, *mesh.materials[1:]))
