from __future__ import annotations

import pytest
import torch

from difflod.geometry.displace import sample_texture
from difflod.geometry.uber import merge_materials
from difflod.mesh import Material, Mesh

from ._shapes import grid


def _scene() -> Mesh:
    g = torch.Generator().manual_seed(0)
    v, f, uv = grid(3)                      # 18 triangles
    tex_idx = torch.arange(54).reshape(18, 3)
    uvs = uv[f].reshape(-1, 2).clone()
    t_mat = torch.arange(18) % 3
    # material 2 tiles: its triangles' UVs moved to [1.3, 3.1] (spans two tiles) and negatives
    tiled = (t_mat == 2).repeat_interleave(3)
    uvs[tiled] = uvs[tiled] * 1.8 + torch.tensor([1.3, -2.2])
    mats = (
        Material(name="const", kd=torch.tensor([[[0.2, 0.4, 0.6]]]),
                 ks=torch.tensor([[[0.0, 0.3, 1.0]]])),
        Material(name="tex", kd=torch.rand(8, 4, 3, generator=g),
                 ks=torch.rand(8, 4, 3, generator=g), alpha_mode="OPAQUE"),
        Material(name="tiled", kd=torch.rand(4, 4, 4, generator=g),
                 ks=torch.tensor([[[1.0, 0.5, 0.0]]]), alpha_mode="MASK", alpha_cutoff=0.3),
    )
    return Mesh(v_pos=v, t_pos_idx=f, v_tex=uvs, t_tex_idx=tex_idx, t_mat=t_mat,
                materials=mats).validate()


def _sample_at(m: Mesh, bary: torch.Tensor, key: str) -> torch.Tensor:
    uv = (m.v_tex[m.t_tex_idx] * bary[None, :, None]).sum(1)
    ids = m.material_ids()
    out = []
    for i in range(len(uv)):
        tex = getattr(m.materials[int(ids[i])], key)
        val = sample_texture(tex, uv[i:i + 1])[0]
        if key == "kd":
            alpha = val[3:] if val.shape[0] == 4 and m.materials[int(ids[i])].alpha_mode != \
                "OPAQUE" else torch.ones(1)
            val = torch.cat([val[:3], alpha])
        out.append(val)
    return torch.stack(out)


@pytest.mark.parametrize("bary", [(1 / 3, 1 / 3, 1 / 3), (0.7, 0.2, 0.1), (0.05, 0.05, 0.9)])
def test_merged_atlas_samples_like_originals(bary) -> None:
    m = _scene()
    merged = merge_materials(m).validate()
    assert len(merged.materials) == 1 and merged.t_mat is None
    b = torch.tensor(bary)
    for key in ("kd", "ks"):
        torch.testing.assert_close(_sample_at(merged, b, key), _sample_at(m, b, key),
                                   atol=1e-5, rtol=0)


def test_alpha_mode_and_small_constant_cells() -> None:
    merged = merge_materials(_scene())
    mat = merged.materials[0]
    assert mat.alpha_mode == "MASK" and mat.alpha_cutoff == pytest.approx(0.3)
    assert mat.kd.shape[-1] == 4
    # cells: 8x4 (+gutter 12x8), tiled 4x4 x (2x2 reps) = 8x8 (+gutter 12x12), const 5x5
    assert mat.kd.shape[0] * mat.kd.shape[1] <= 2 * (12 * 8 + 12 * 12 + 5 * 5)


def test_normal_scale_baked_and_texture_res() -> None:
    v, f, uv = grid(1)
    n = torch.tensor([0.6, 0.0, 0.8]).expand(2, 2, 3).clone()
    mats = (Material(name="a", normal=n, normal_scale=0.5),
            Material(name="b", kd=torch.rand(64, 64, 3)))
    m = Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=f, t_mat=torch.tensor([0, 1]),
             materials=mats)
    out = merge_materials(m, texture_res=16).validate()
    mat = out.materials[0]
    assert max(mat.kd.shape[:2]) <= 16 + 2 * 2 + 8
    centre = sample_texture(mat.normal, out.v_tex[out.t_tex_idx[0]].mean(0, keepdim=True))[0]
    expect = torch.tensor([0.3, 0.0, 0.8]) / torch.tensor([0.3, 0.0, 0.8]).norm()
    torch.testing.assert_close(centre, expect, atol=1e-5, rtol=0)
    # material without a normal map gets the flat normal
    flat = sample_texture(mat.normal, out.v_tex[out.t_tex_idx[1]].mean(0, keepdim=True))[0]
    torch.testing.assert_close(flat, torch.tensor([0.0, 0, 1]))


def test_single_material_unchanged_and_validation() -> None:
    v, f, uv = grid(1)
    m = Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=f)
    assert merge_materials(m) is m
    with pytest.raises(ValueError, match="texture_res"):
        merge_materials(m, texture_res=0)


def test_emissive_is_merged_and_absent_emission_is_black() -> None:
    """One material emits (a texture, values above 1): the atlas samples like it
    there, and 0 on the triangles of the materials that emit nothing."""
    g = torch.Generator().manual_seed(1)
    m = _scene()
    glow = torch.rand(8, 4, 3, generator=g) * 3.0
    mats = list(m.materials)
    mats[1] = Material(name="tex", kd=mats[1].kd, ks=mats[1].ks, emissive=glow)
    m = m.replace(materials=tuple(mats)).validate()
    merged = merge_materials(m).validate()
    assert merged.materials[0].emissive is not None
    b = torch.tensor([0.6, 0.3, 0.1])
    ids = m.material_ids()
    uv = (m.v_tex[m.t_tex_idx] * b[None, :, None]).sum(1)
    muv = (merged.v_tex[merged.t_tex_idx] * b[None, :, None]).sum(1)
    got = sample_texture(merged.materials[0].emissive, muv)
    want = torch.where((ids == 1)[:, None], sample_texture(glow, uv), torch.zeros(1, 3))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert float(want.abs().max()) > 1.0
