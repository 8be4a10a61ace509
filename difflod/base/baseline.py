"""The QEM baseline: what users do today without difflod.

1. Weld coincident positions (seam splits), then decimate the reference's
   positions to the triangle budget with quadric error metrics
   (decimate.py, fast-simplification). Decimation works on the position
   index buffer only, so UV seams do not constrain it.
2. Give the decimated mesh a fresh UV atlas with xatlas (atlas.py;
   fast-simplification does not carry UVs through collapses), packed into
   `texture_res` texels with a few texels of padding between charts.
3. Bake the reference's appearance (kd, ks and a tangent-space normal map)
   onto that atlas by closest-point transfer (bake.py).

The result carries smooth vertex normals and per-UV-vertex tangents, which
the normal map was baked against.
"""

from __future__ import annotations

import torch

from difflod.base.atlas import uv_atlas
from difflod.base.bake import bake_textures, to_tensor
from difflod.base.decimate import decimate
from difflod.mesh import Material, Mesh

__all__ = ["baseline"]


def baseline(reference: Mesh, triangles: int, *, texture_res: int = 1024, seed: int = 0,
             bake_normals: bool = True) -> Mesh:
    """QEM decimation to `triangles` faces, xatlas UVs, and a texture bake of `reference`.

    Args:
        reference: the detailed mesh (validated; any number of materials).
        triangles: the triangle budget (>= 4).
        texture_res: side of the square baked textures.
        seed: seed of the reference surface sampling used by the bake.
        bake_normals: also bake a tangent-space normal map.
    Returns:
        A new Mesh with one material "baseline" (kd `[R,R,3|4]`, ks `[R,R,3]`,
        normal `[R,R,3]` or None), UVs, vertex normals and tangents.
    """
    if triangles < 4:
        raise ValueError(f"baseline: triangles must be >= 4, got {triangles}")
    if texture_res < 8:
        raise ValueError(f"baseline: texture_res must be >= 8, got {texture_res}")
    pos, idx = decimate(reference.v_pos.detach().cpu().numpy(),
                        reference.t_pos_idx.cpu().numpy(), triangles)
    uv, uv_idx = uv_atlas(pos, idx, texture_res)
    baked = bake_textures(reference, pos, idx, uv, uv_idx, texture_res, seed=seed,
                          bake_normals=bake_normals)
    src = reference.materials[0]
    alpha_src = next((m for m in reference.materials if m.has_alpha), src)
    material = Material(
        name="baseline",
        kd=to_tensor(baked["kd"]),
        ks=to_tensor(baked["ks"]),
        normal=to_tensor(baked["normal"]) if baked["normal"] is not None else None,
        alpha_mode=alpha_src.alpha_mode,
        alpha_cutoff=alpha_src.alpha_cutoff,
        double_sided=src.double_sided,
    )
    idx_t = torch.from_numpy(idx)
    uv_idx_t = torch.from_numpy(uv_idx)
    mesh = Mesh(
        v_pos=torch.from_numpy(pos), t_pos_idx=idx_t,
        v_tex=torch.from_numpy(uv), t_tex_idx=uv_idx_t,
        v_nrm=to_tensor(baked["v_nrm"]), t_nrm_idx=idx_t.clone(),
        v_tng=to_tensor(baked["v_tng"]), t_tng_idx=uv_idx_t.clone(),
        materials=(material,),
    )
    return mesh.to(reference.device).validate()
