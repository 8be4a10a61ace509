"""Merge a mesh's materials into one "uber material" texture atlas.

nvdiffmodeling trains a single material, so a multi-material reference is
merged first. nvdiffmodeling scales every texture to the largest one and lays
them side by side; difflod packs cells of their own size, so constant (1x1)
materials cost a few texels, and it handles tiling UVs:

1. Tiling. Each triangle's UVs are shifted by the integer offset
   floor(min uv) (per axis), which changes nothing under wrap addressing.
   A triangle that then still spans more than one tile needs r = ceil(max)
   tiles; a material's cell holds its texture repeated r_u x r_v times (the
   largest r of its triangles, at most `max_repeat`). UVs of triangles
   spanning more than `max_repeat` tiles are clamped (documented loss).
2. Cells. A material's kd/ks/normal/displacement/emissive are brought to one size,
   the largest among them (1x1 constants are replicated exactly, other sizes
   bilinearly resampled). With `texture_res`, cells larger than that on a
   side are downsampled to fit (antialiased).
3. Gutter. Each cell is surrounded by `gutter` texels copied with
   wrap-around from its own texture, so bilinear filtering at a cell border
   reads what wrap addressing would have read in the original: sampling the
   atlas at the remapped UV equals sampling the original texture (exactly
   when no resampling happened). Mip-mapping across cells is not guarded.
4. Packing. Cells are sorted by height and placed on shelves in an atlas
   whose width is max(widest cell, ceil(sqrt(total area))).
5. Material values. kd gets an alpha channel when the merged mode is not
   OPAQUE (materials that were OPAQUE or had no alpha get alpha 1). The
   alpha mode is BLEND if any is BLEND, else MASK if any is MASK (cutoff of
   the first MASK material), else OPAQUE. normal_scale is baked into the
   normal map (glTF: normalize(n * (s, s, 1))); materials without a map get
   (0, 0, 1); missing displacement and emissive are 0 (emissive is in the
   atlas when any material has one). double_sided if any is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from difflod.mesh import Material, Mesh

__all__ = ["merge_materials"]


def _resize(tex: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if tex.shape[0] == h and tex.shape[1] == w:
        return tex
    if tex.shape[0] == 1 and tex.shape[1] == 1:
        return tex.expand(h, w, tex.shape[2]).clone()
    down = h < tex.shape[0] or w < tex.shape[1]
    out = F.interpolate(tex.permute(2, 0, 1)[None], size=(h, w), mode="bilinear",
                        align_corners=False, antialias=down)
    return out[0].permute(1, 2, 0)


def _wrap_pad(tex: torch.Tensor, g: int) -> torch.Tensor:
    h, w = tex.shape[0], tex.shape[1]
    rows = torch.remainder(torch.arange(-g, h + g, device=tex.device), h)
    cols = torch.remainder(torch.arange(-g, w + g, device=tex.device), w)
    return tex[rows][:, cols]


def _channels(mat: Material, merged_alpha: bool, has_normal: bool, has_emissive: bool,
              has_disp: bool) -> dict[str, torch.Tensor]:
    dev, dt = mat.kd.device, mat.kd.dtype
    kd = mat.kd[..., :3]
    if merged_alpha:
        if mat.kd.shape[-1] == 4 and mat.alpha_mode != "OPAQUE":
            alpha = mat.kd[..., 3:]
        else:
            alpha = torch.ones_like(mat.kd[..., :1])
        kd = torch.cat([kd, alpha], dim=-1)
    out = {"kd": kd, "ks": mat.ks}
    if has_normal:
        if mat.normal is None:
            out["normal"] = torch.tensor([0.0, 0.0, 1.0], dtype=dt, device=dev).reshape(1, 1, 3)
        else:
            s = torch.tensor([mat.normal_scale, mat.normal_scale, 1.0], dtype=dt, device=dev)
            n = mat.normal * s
            out["normal"] = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if has_disp:
        out["displacement"] = mat.displacement if mat.displacement is not None else \
            torch.zeros(1, 1, 1, dtype=dt, device=dev)
    if has_emissive:
        out["emissive"] = mat.emissive if mat.emissive is not None else \
            torch.zeros(1, 1, 3, dtype=dt, device=dev)
    return out


def merge_materials(mesh: Mesh, texture_res: int | None = None, gutter: int = 2,
                    max_repeat: int = 4) -> Mesh:
    """One material and one UV set that render like the mesh's several materials.

    Args:
        mesh: the mesh (t_mat selects each triangle's material).
        texture_res: if given, the largest side (texels) of any material's cell.
        gutter: texels of wrap-around padding around each cell (>= 1).
        max_repeat: most texture repeats per axis a cell holds for tiling UVs.
    Returns:
        A new Mesh with one material "uber_material", t_mat None, new v_tex /
        t_tex_idx. A mesh with a single material is returned unchanged.
    """
    if texture_res is not None and (not isinstance(texture_res, int) or texture_res < 1):
        raise ValueError(f"texture_res must be a positive int or None, got {texture_res!r}")
    if not isinstance(gutter, int) or gutter < 1:
        raise ValueError(f"gutter must be an int >= 1, got {gutter!r}")
    if not isinstance(max_repeat, int) or max_repeat < 1:
        raise ValueError(f"max_repeat must be an int >= 1, got {max_repeat!r}")
    mats = mesh.materials
    if len(mats) == 1:
        return mesh
    dev = mesh.device
    n_tris = mesh.num_triangles
    if mesh.v_tex is not None and mesh.t_tex_idx is not None:
        uv = mesh.v_tex[mesh.t_tex_idx].detach()                          # [F,3,2]
    else:
        uv = torch.zeros(n_tris, 3, 2, dtype=torch.float32, device=dev)
    mat_id = mesh.material_ids()
    local = uv - torch.floor(uv.min(dim=1, keepdim=True).values)
    reps_tri = torch.ceil(local.max(dim=1).values).clamp(1, max_repeat).long()   # [F,2]
    local = torch.minimum(local, reps_tri[:, None, :].to(local.dtype))

    blend = any(m.alpha_mode == "BLEND" for m in mats)
    mask = [m for m in mats if m.alpha_mode == "MASK"]
    mode = "BLEND" if blend else ("MASK" if mask else "OPAQUE")
    has_normal = any(m.normal is not None for m in mats)
    has_disp = any(m.displacement is not None for m in mats)
    has_emissive = any(m.emissive is not None for m in mats)

    cells, reps = [], []
    for i, m in enumerate(mats):
        chans = _channels(m, mode != "OPAQUE", has_normal, has_emissive, has_disp)
        h = max(int(t.shape[0]) for t in chans.values())
        w = max(int(t.shape[1]) for t in chans.values())
        sel = mat_id == i
        r = reps_tri[sel].max(dim=0).values if bool(sel.any()) else torch.ones(2, dtype=torch.long)
        ru, rv = int(r[0]), int(r[1])
        ch, cw = h * rv, w * ru
        if texture_res is not None and max(ch, cw) > texture_res:
            f = texture_res / max(ch, cw)
            ch, cw = max(1, round(ch * f)), max(1, round(cw * f))
        tiled = {k: _resize(_resize(t, h, w).repeat(rv, ru, 1), ch, cw)
                 for k, t in chans.items()}
        cells.append({k: _wrap_pad(t, gutter) for k, t in tiled.items()})
        reps.append((ru, rv, cw, ch))

    sizes = [(c["kd"].shape[0], c["kd"].shape[1]) for c in cells]
    atlas_w = max(max(s[1] for s in sizes),
                  math.ceil(math.sqrt(sum(s[0] * s[1] for s in sizes))))
    order = sorted(range(len(cells)), key=lambda k: -sizes[k][0])
    origin: dict[int, tuple[int, int]] = {}
    x = y = shelf_h = 0
    for k in order:
        hh, ww = sizes[k]
        if x + ww > atlas_w:
            x, y, shelf_h = 0, y + shelf_h, 0
        origin[k] = (y, x)
        x, shelf_h = x + ww, max(shelf_h, hh)
    atlas_h = y + shelf_h

    merged: dict[str, torch.Tensor] = {}
    for key in cells[0]:
        c = cells[0][key].shape[2]
        atlas = torch.zeros(atlas_h, atlas_w, c, dtype=cells[0][key].dtype, device=dev)
        if key == "normal":
            atlas[..., 2] = 1.0
        for k, cell in enumerate(cells):
            oy, ox = origin[k]
            atlas[oy:oy + cell[key].shape[0], ox:ox + cell[key].shape[1]] = cell[key]
        merged[key] = atlas

    # remap UVs into the cells
    oy = torch.tensor([origin[k][0] for k in range(len(cells))], dtype=local.dtype, device=dev)
    ox = torch.tensor([origin[k][1] for k in range(len(cells))], dtype=local.dtype, device=dev)
    rep = torch.tensor(reps, dtype=local.dtype, device=dev)               # [M,4]
    r_m, oy_m, ox_m = rep[mat_id], oy[mat_id], ox[mat_id]
    u_new = (ox_m[:, None] + gutter + local[..., 0] / r_m[:, None, 0] * r_m[:, None, 2]) / atlas_w
    v_new = (oy_m[:, None] + gutter + local[..., 1] / r_m[:, None, 1] * r_m[:, None, 3]) / atlas_h
    corners = torch.stack([u_new, v_new], dim=-1).reshape(-1, 2).float()
    v_tex, inv = torch.unique(corners, dim=0, return_inverse=True)

    cutoff = mask[0].alpha_cutoff if mask else 0.5
    uber = Material(name="uber_material", kd=merged["kd"], ks=merged["ks"],
                    normal=merged.get("normal"), normal_scale=1.0,
                    displacement=merged.get("displacement"), emissive=merged.get("emissive"),
                    alpha_mode=mode,
                    alpha_cutoff=cutoff, double_sided=any(m.double_sided for m in mats))
    return mesh.replace(v_tex=v_tex, t_tex_idx=inv.reshape(-1, 3), t_mat=None,
                        materials=(uber,))
