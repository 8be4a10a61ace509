"""The QEM baseline: what users do today without difflod.

1. Weld coincident positions (seam splits), then decimate the reference's positions to the triangle budget with quadric
   error metrics (fast-simplification). Decimation works on the position
   index buffer only, so UV seams do not constrain it.
2. Give the decimated mesh a fresh UV atlas with xatlas (atlas.py;
   fast-simplification does not carry UVs through collapses), packed into
   `texture_res` texels with a few texels of padding between charts.
3. Bake the reference's appearance (kd, ks, a tangent-space normal map, and
   occlusion and emissive where the reference has them) onto that atlas by closest-point transfer (bake.py).

Every step works on the reference scaled to unit size (QEM, xatlas and the
bake have absolute tolerances); the result is scaled back. It carries smooth vertex normals and per-UV-vertex tangents, which
the normal map was baked against.
"""

from __future__ import annotations

import numpy as np
import torch

from difflod.base.atlas import uv_atlas
from difflod.base.bake import bake_textures, to_tensor
from difflod.base.decimate import decimate, weld
from difflod.errors import DiffLodError
from difflod.geometry.transform import reference_matrix, transform
from difflod.mesh import Material, Mesh

__all__ = ["baseline", "decimate", "weld"]


def baseline(reference: Mesh, triangles: int, *, texture_res: int = 1024, seed: int = 0,
             bake_normals: bool = True, method: str = "qem",
             geometry: tuple[np.ndarray, np.ndarray] | None = None) -> Mesh:
    """QEM decimation to `triangles` faces, xatlas UVs, and a texture bake of `reference`;
    or, with `method="cards"`, a billboard cloud of it (base/cards.py).

    Args:
        reference: the detailed mesh (validated; any number of materials).
        triangles: the triangle budget (>= 4).
        texture_res: side of the square baked textures.
        seed: seed of the reference surface sampling used by the bake.
        bake_normals: also bake a tangent-space normal map.
        method: "qem", "remesh" (an even remesh of a closed surface,
            base/remesh.py), or "cards" (crossed alpha-tested cards, MASK at
            0.5, double-sided: for foliage, which QEM cannot simplify).
        geometry: with "remesh", the remesh already made (positions in the
            reference's space, indices: base.remesh.even_geometry's).
    Returns:
        A new Mesh with one material "baseline" (kd `[R,R,3|4]`, ks `[R,R,3]`,
        normal `[R,R,3]` or None), UVs, vertex normals and tangents.
    """
    if triangles < 4:
        raise ValueError(f"baseline: triangles must be >= 4, got {triangles}")
    if texture_res < 8:
        raise ValueError(f"baseline: texture_res must be >= 8, got {texture_res}")
    # work at unit size: QEM, xatlas and the bake have absolute tolerances (a
    # sphere 1e-6 across got NaN UVs from xatlas); the result is scaled back
    lo, hi = (x.detach().cpu() for x in reference.aabb())
    if not float((hi - lo).max()) > 0:
        raise ValueError("baseline: the reference has zero size (all vertices at one point)")
    to_unit = reference_matrix((lo, hi), 2.0)
    reference = transform(reference, to_unit)
    src = reference.materials[0]
    alpha_src = next((m for m in reference.materials if m.has_alpha), src)
    alpha_mode, alpha_cutoff = alpha_src.alpha_mode, alpha_src.alpha_cutoff
    double_sided = any(m.double_sided for m in reference.materials)
    if method == "cards":
        from difflod.base.cards import card_cloud

        pos, idx, uv, uv_idx, baked = card_cloud(reference, triangles, texture_res, seed=seed,
                                                 bake_normals=bake_normals)
        alpha_mode, alpha_cutoff, double_sided = "MASK", 0.5, True
    elif method in ("qem", "remesh"):
        pos, idx = _geometry(reference, triangles, method, geometry, to_unit)
        uv, uv_idx = uv_atlas(pos, idx, texture_res)
        baked = bake_textures(reference, pos, idx, uv, uv_idx, texture_res, seed=seed,
                              bake_normals=bake_normals)
    else:
        raise ValueError(f"baseline: method must be 'qem', 'remesh' or 'cards', got {method!r}")
    material = Material(
        name="baseline",
        kd=to_tensor(baked["kd"]),
        ks=to_tensor(baked["ks"]),
        normal=to_tensor(baked["normal"]) if baked["normal"] is not None else None,
        occlusion=to_tensor(baked["occlusion"]) if baked["occlusion"] is not None else None,
        emissive=to_tensor(baked["emissive"]) if baked["emissive"] is not None else None,
        alpha_mode=alpha_mode,
        alpha_cutoff=alpha_cutoff,
        # one material for every part: two-sided where any part is (a glass shell)
        double_sided=double_sided,
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
    return transform(mesh, torch.linalg.inv(to_unit)).to(reference.device).validate()


def _geometry(reference: Mesh, triangles: int, method: str,
              given: tuple[np.ndarray, np.ndarray] | None,
              to_unit: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The base's (positions, indices) at unit size; `reference` is at unit size,
    `given` (a remesh made by the caller) in the reference's own space."""
    if given is not None:
        m = to_unit.numpy()
        pos = np.asarray(given[0], dtype=np.float64) @ m[:3, :3].T + m[:3, 3]
        return pos.astype(np.float32), np.asarray(given[1], dtype=np.int64)
    v_pos, t_pos_idx = reference.v_pos.detach().cpu().numpy(), reference.t_pos_idx.cpu().numpy()
    if method == "qem":
        return decimate(v_pos, t_pos_idx, triangles)
    from difflod.base.remesh import remesh

    out = remesh(v_pos, t_pos_idx, triangles)
    if out is None:
        raise DiffLodError("base_method 'remesh' needs a closed, edge-manifold surface (every "
                           "edge shared by two triangles); this model has borders or fins: "
                           "use 'qem' or 'auto'")
    return out
