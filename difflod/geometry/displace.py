"""Displacement mapping: move vertices along their normals by a texture.

Used for nvdiffmodeling's `displacement` option: a displacement map trained
on a subdivided base mesh. v' = v + scale * d(uv) * n, where

- d is the `[H,W,1]` texture sampled bilinearly at the vertex's UV with
  wrap-around addressing (nvdiffrast's default "wrap" boundary mode), texel
  centres at ((i+0.5)/W, (j+0.5)/H), row 0 at v=0 (difflod's glTF UVs);
- a vertex used with several UVs (on a seam) gets the mean of d over its
  distinct UVs; a vertex no triangle uses gets d = 0;
- n is the angle-weighted normal recomputed from the current positions
  (`use_mesh_normals=False`, the default, as nvdiffmodeling recomputes
  normals each step), or the mesh's own normals averaged per position.

`sample_texture` is the bilinear wrap sampler, in plain torch so it is
differentiable in the texture and the UVs; the renderer has its own texture
op, this one serves geometry.
Normals and tangents of the result are left as they were; call
`with_normals` / `with_tangents` to refresh them.
"""

from __future__ import annotations

import torch

from difflod.geometry.normals import check_positions, safe_normalize, vertex_normals
from difflod.mesh import Mesh

__all__ = ["displace", "sample_texture", "vertex_displacement"]


def sample_texture(tex: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear, wrap-around texture lookup.

    Args:
        tex: `[H,W,C]` float texture.
        uv: `[N,2]` float UVs (glTF convention: (0,0) = corner of the first texel row).
    Returns:
        `[N,C]` values, differentiable in tex and uv.
    """
    if not isinstance(tex, torch.Tensor) or tex.dim() != 3 or not tex.is_floating_point():
        raise ValueError(f"tex must be a [H,W,C] float tensor, got "
                         f"{tuple(getattr(tex, 'shape', ()))}")
    check_positions("uv", uv, 2)
    h, w = int(tex.shape[0]), int(tex.shape[1])
    x = uv[:, 0].to(tex.dtype) * w - 0.5
    y = uv[:, 1].to(tex.dtype) * h - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    xi0 = torch.remainder(x0.long(), w)
    yi0 = torch.remainder(y0.long(), h)
    xi1, yi1 = torch.remainder(xi0 + 1, w), torch.remainder(yi0 + 1, h)
    top = tex[yi0, xi0] * (1 - fx) + tex[yi0, xi1] * fx
    bottom = tex[yi1, xi0] * (1 - fx) + tex[yi1, xi1] * fx
    return top * (1 - fy) + bottom * fy


def vertex_displacement(mesh: Mesh, disp_tex: torch.Tensor) -> torch.Tensor:
    """`[V]` displacement per position: mean of the texture over the vertex's distinct UVs."""
    if mesh.v_tex is None or mesh.t_tex_idx is None:
        raise ValueError("mesh has no UVs (v_tex/t_tex_idx): displacement needs them")
    pairs = torch.stack([mesh.t_pos_idx.reshape(-1), mesh.t_tex_idx.reshape(-1)], dim=1)
    pairs = torch.unique(pairs, dim=0)
    d = sample_texture(disp_tex, mesh.v_tex[pairs[:, 1]])[:, 0]
    v = mesh.num_vertices
    total = torch.zeros(v, dtype=d.dtype, device=d.device).index_add(0, pairs[:, 0], d)
    count = torch.bincount(pairs[:, 0], minlength=v).to(d.dtype)
    return total / count.clamp_min(1.0)


def displace(mesh: Mesh, disp_tex: torch.Tensor, scale: float = 1.0,
             use_mesh_normals: bool = False) -> Mesh:
    """Move each vertex along its normal by `scale * disp_tex(uv)`.

    Args:
        mesh: a mesh with UVs.
        disp_tex: `[H,W,1]` float displacement texture.
        scale: multiplier on the texture values.
        use_mesh_normals: use mesh.v_nrm (averaged per position) instead of
            recomputing normals from positions.
    Returns:
        A new Mesh with displaced v_pos, differentiable in v_pos and disp_tex.
    """
    if not isinstance(disp_tex, torch.Tensor) or disp_tex.dim() != 3 \
            or disp_tex.shape[2] != 1 or not disp_tex.is_floating_point():
        raise ValueError(f"disp_tex must be a [H,W,1] float tensor, got "
                         f"{tuple(getattr(disp_tex, 'shape', ()))}")
    d = vertex_displacement(mesh, disp_tex).to(mesh.v_pos.dtype)
    if use_mesh_normals:
        if mesh.v_nrm is None or mesh.t_nrm_idx is None:
            raise ValueError("use_mesh_normals=True but the mesh has no normals")
        corner_n = mesh.v_nrm[mesh.t_nrm_idx.reshape(-1)]
        acc = torch.zeros_like(mesh.v_pos).index_add(0, mesh.t_pos_idx.reshape(-1),
                                                     corner_n.to(mesh.v_pos.dtype))
        up = torch.tensor([0.0, 0.0, 1.0], dtype=mesh.v_pos.dtype, device=mesh.v_pos.device)
        n = safe_normalize(acc, up)
    else:
        n = vertex_normals(mesh.v_pos, mesh.t_pos_idx)
    return mesh.replace(v_pos=mesh.v_pos + float(scale) * d[:, None] * n)
