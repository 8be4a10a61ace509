"""Tests of difflod.assets: determinism, counts, watertightness, winding, UVs,
texture ranges, skinning, materials and argument errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from difflod.assets import ASSETS, demo_pair, make
from difflod.errors import DiffLodError
from difflod.mesh import Mesh

CLOSED = ("sphere", "spiky", "knot", "skinned_cylinder", "multi_material", "beacon", "glass")
SMALL_TEX = 32


def _tensors(mesh: Mesh) -> dict[str, torch.Tensor]:
    """Every tensor of a mesh (materials and skin included), by a readable key."""
    out = {f.name: getattr(mesh, f.name) for f in dataclasses.fields(mesh)
           if isinstance(getattr(mesh, f.name), torch.Tensor)}
    for i, m in enumerate(mesh.materials):
        for k in ("kd", "ks", "normal", "displacement", "emissive"):
            if getattr(m, k) is not None:
                out[f"mat{i}.{k}"] = getattr(m, k)
    if mesh.skin is not None:
        out["skin.times"] = mesh.skin.times
        out["skin.matrices"] = mesh.skin.matrices
    return out


def _directed_edges(tri: torch.Tensor) -> torch.Tensor:
    """`[3F,2]` directed edges (a->b) of the triangles."""
    return torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])


def _signed_volume(mesh: Mesh) -> float:
    p = mesh.v_pos.double()[mesh.t_pos_idx]
    return float((p[:, 0] * torch.linalg.cross(p[:, 1], p[:, 2], dim=1)).sum() / 6.0)


# ---- determinism -----------------------------------------------------------

@pytest.mark.parametrize("name", ASSETS)
def test_same_arguments_give_identical_tensors(name: str) -> None:
    a = make(name, triangles=2000, seed=3, texture_res=SMALL_TEX)
    b = make(name, triangles=2000, seed=3, texture_res=SMALL_TEX)
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and torch.equal(ta[key], tb[key]), key


@pytest.mark.parametrize("name", ASSETS)
def test_other_seed_gives_other_model(name: str) -> None:
    a = _tensors(make(name, triangles=2000, seed=0, texture_res=SMALL_TEX))
    b = _tensors(make(name, triangles=2000, seed=1, texture_res=SMALL_TEX))
    differing = [k for k in a if a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
    assert differing, "seed changed nothing"


def test_spiky_geometry_depends_on_seed() -> None:
    a = make("spiky", triangles=2000, seed=0, texture_res=SMALL_TEX)
    b = make("spiky", triangles=2000, seed=1, texture_res=SMALL_TEX)
    assert (a.v_pos - b.v_pos).abs().max() > 0.05


# ---- counts, validity, shape -------------------------------------------------

@pytest.mark.parametrize("triangles", [1000, 20000, 200000])
@pytest.mark.parametrize("name", ASSETS)
def test_triangle_count_within_ten_percent(name: str, triangles: int) -> None:
    mesh = make(name, triangles=triangles, texture_res=SMALL_TEX)
    assert abs(mesh.num_triangles - triangles) <= 0.1 * triangles
    mesh.validate()
    lo, hi = mesh.aabb()
    assert float(lo.min()) >= -1.0 and float(hi.max()) <= 1.0
    assert float((hi - lo).max()) > 1.0, "model should be roughly unit scale"


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSETS)
def test_one_million_triangles(name: str) -> None:
    mesh = make(name, triangles=1_000_000, texture_res=SMALL_TEX)
    assert abs(mesh.num_triangles - 1_000_000) <= 100_000
    mesh.validate()


@pytest.mark.parametrize("name", ASSETS)
def test_smallest_request_gives_a_valid_model(name: str) -> None:
    mesh = make(name, triangles=12, texture_res=4)
    mesh.validate()
    assert 12 <= mesh.num_triangles <= 64


@pytest.mark.parametrize("triangles", [12, 1000, 20000])
@pytest.mark.parametrize("name", CLOSED)
def test_closed_assets_are_watertight_and_consistently_wound(name: str, triangles: int) -> None:
    mesh = make(name, triangles=triangles, texture_res=SMALL_TEX)
    tri = mesh.t_pos_idx
    assert bool((tri[:, 0] != tri[:, 1]).all() & (tri[:, 1] != tri[:, 2]).all()
                & (tri[:, 2] != tri[:, 0]).all()), "degenerate triangle"
    directed = _directed_edges(tri)
    # Each directed edge once, and its reverse present: every edge is shared by
    # exactly two triangles that traverse it in opposite directions.
    key = directed[:, 0] * mesh.num_vertices + directed[:, 1]
    assert key.unique().numel() == key.numel(), "a directed edge repeats: winding flips"
    reverse = directed[:, 1] * mesh.num_vertices + directed[:, 0]
    assert bool(torch.isin(reverse, key).all()), "an edge has one triangle: not closed"
    # Every position is used (no hidden duplicates along seams).
    assert torch.bincount(tri.reshape(-1), minlength=mesh.num_vertices).min() > 0


@pytest.mark.parametrize("name", CLOSED)
def test_winding_is_counter_clockwise_from_outside(name: str) -> None:
    assert _signed_volume(make(name, triangles=5000, texture_res=SMALL_TEX)) > 0.05


def test_sphere_volume_and_radius() -> None:
    mesh = make("sphere", triangles=20000, texture_res=SMALL_TEX)
    radius = mesh.v_pos.norm(dim=1)
    assert torch.allclose(radius, torch.full_like(radius, 0.95), atol=1e-5)
    assert _signed_volume(mesh) == pytest.approx(4.0 / 3.0 * math.pi * 0.95 ** 3, rel=0.01)


@pytest.mark.parametrize("name", ASSETS)
def test_uvs_in_range_and_seams_split_uvs_only(name: str) -> None:
    mesh = make(name, triangles=3000, texture_res=SMALL_TEX)
    assert mesh.has_uv
    assert float(mesh.v_tex.min()) >= 0.0 and float(mesh.v_tex.max()) <= 1.0
    if name in ("sphere", "spiky", "knot", "skinned_cylinder", "multi_material"):
        # Wrapping surfaces have more UV vertices than positions (split seam).
        assert mesh.v_tex.shape[0] > mesh.num_vertices


def test_sphere_uv_seam_wraps_from_one_to_zero() -> None:
    mesh = make("sphere", triangles=1000, texture_res=SMALL_TEX)
    u = mesh.v_tex[mesh.t_tex_idx][..., 0]                       # [F,3]
    # No triangle spans the whole texture (that would be an unsplit seam).
    assert float((u.max(1).values - u.min(1).values).max()) < 0.2
    assert float(u.max()) == pytest.approx(1.0) and float(u.min()) < 0.05


# ---- textures ----------------------------------------------------------------

@pytest.mark.parametrize("name", ASSETS)
def test_textures_hold_valid_linear_values(name: str) -> None:
    res = 64
    mesh = make(name, triangles=1000, texture_res=res)
    for m in mesh.materials:
        for tex in (m.kd, m.ks):
            assert tex.dtype == torch.float32
            assert float(tex.min()) >= 0.0 and float(tex.max()) <= 1.0, m.name
        if m.kd.shape[0] > 1:
            assert m.kd.shape[:2] == (res, res)
            assert float(m.kd[..., :3].std()) > 0.01, "textured kd should vary"
        if m.normal is not None:
            length = m.normal.norm(dim=-1)
            assert torch.allclose(length, torch.ones_like(length), atol=1e-5)
            assert float(m.normal[..., 2].min()) > 0.0, "normals must face out of the surface"


def test_texture_resolution_follows_argument() -> None:
    mesh = make("spiky", triangles=1000, texture_res=48)
    m = mesh.materials[0]
    assert m.kd.shape == (48, 48, 3) and m.ks.shape == (48, 48, 3) and m.normal.shape == (48, 48, 3)


def test_spiky_has_varied_pbr_channels() -> None:
    m = make("spiky", triangles=1000, texture_res=128).materials[0]
    rough, metal = m.ks[..., 1], m.ks[..., 2]
    assert float(rough.max() - rough.min()) > 0.4
    assert float(metal.max()) > 0.5 and float(metal.min()) < 0.1
    assert float(m.normal[..., :2].abs().max()) > 0.3, "normal map should have detail"


def test_spiky_textures_tile_in_u() -> None:
    # The seam column pair (last, first) differs no more than neighbours do.
    kd = make("spiky", triangles=1000, texture_res=128).materials[0].kd
    seam = (kd[:, -1] - kd[:, 0]).abs().mean()
    inner = (kd[:, 1:] - kd[:, :-1]).abs().mean()
    assert float(seam) < 3.0 * float(inner)


def test_shrub_alpha_mask() -> None:
    mesh = make("shrub", triangles=5000, texture_res=128)
    assert len(mesh.materials) == 1
    m = mesh.materials[0]
    assert m.kd.shape[-1] == 4 and m.alpha_mode == "MASK" and m.alpha_cutoff == 0.5
    alpha = m.kd[..., 3]
    assert bool((alpha == 0).any()) and bool((alpha == 1).any())
    assert 0.1 < float((alpha == 0).float().mean()) < 0.7
    # Leaves are quads: most triangles come in pairs sharing two vertices and no vertex
    # with any other triangle, and each pair's four corners lie in one plane.
    from scipy.sparse import csr_matrix

    tris = mesh.t_pos_idx.numpy()
    f = tris.shape[0]
    inc = csr_matrix((np.ones(3 * f), (np.repeat(np.arange(f), 3), tris.reshape(-1))))
    shared = (inc @ inc.T).tocoo()                     # [F,F]: vertices two triangles share
    other = shared.row != shared.col
    touching = np.bincount(shared.row[other], minlength=f)
    partner = np.full(f, -1)
    partner[shared.row[other]] = shared.col[other]
    two = np.zeros(f, dtype=bool)
    two[shared.row[other & (shared.data == 2)]] = True
    pair = (touching == 1) & two
    assert bool(np.all(pair[partner[pair]])), "pairs are mutual"
    # stems take about 6% of the budget (shrub.py): the rest are leaf quads
    assert pair.mean() > 0.9, pair.mean()
    p = mesh.v_pos.double().numpy()
    a, b = np.nonzero(pair)[0], partner[pair]
    n = np.cross(p[tris[a, 1]] - p[tris[a, 0]], p[tris[a, 2]] - p[tris[a, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    off = np.abs(((p[tris[b]] - p[tris[a, :1]]) * n[:, None]).sum(-1)).max()
    assert off < 1e-5, off                             # float32 corners of a [-1,1] model


# ---- skinning --------------------------------------------------------------------

def test_skinned_cylinder_skin_and_weights() -> None:
    mesh = make("skinned_cylinder", triangles=5000, texture_res=SMALL_TEX)
    skin = mesh.skin
    assert skin is not None and skin.num_joints >= 3
    assert 1.0 <= skin.duration <= 2.0
    eye = torch.eye(4).expand(skin.num_joints, 4, 4)
    assert torch.equal(skin.matrices[0], eye), "first key must be the rest pose"
    w = mesh.v_weights
    assert float(w.min()) >= 0.0
    assert torch.allclose(w.sum(1), torch.ones(mesh.num_vertices), atol=1e-5)
    assert int(mesh.v_joints.max()) < skin.num_joints
    # Smooth: weights change little between neighbouring vertices along an edge.
    e = _directed_edges(mesh.t_pos_idx)
    assert float((w[e[:, 0]] - w[e[:, 1]]).abs().max()) < 0.3

    def pose(t: float) -> torch.Tensor:
        m = skin.at(t)[mesh.v_joints]                                # [V,4,4,4]
        p = torch.cat([mesh.v_pos, torch.ones(mesh.num_vertices, 1)], 1)
        posed = torch.einsum("vkij,vj->vki", m, p)[..., :3]
        return (posed * w[..., None]).sum(1)

    assert torch.allclose(pose(0.0), mesh.v_pos, atol=1e-6)
    bent = pose(skin.duration / 4.0)
    top = mesh.v_pos[:, 1] > 0.9
    bottom = mesh.v_pos[:, 1] < -0.9
    assert float((bent[top] - mesh.v_pos[top]).norm(dim=1).min()) > 0.3, "top should move"
    assert float((bent[bottom] - mesh.v_pos[bottom]).norm(dim=1).max()) < 0.05
    # Bending is rigid-ish: edge lengths stay within a factor of the rest ones.
    rest_len = (mesh.v_pos[e[:, 0]] - mesh.v_pos[e[:, 1]]).norm(dim=1)
    bent_len = (bent[e[:, 0]] - bent[e[:, 1]]).norm(dim=1)
    ratio = bent_len / rest_len
    assert float(ratio.max()) < 1.6 and float(ratio.min()) > 0.4


# ---- materials ------------------------------------------------------------------

def test_multi_material_uses_three_materials() -> None:
    mesh = make("multi_material", triangles=5000, texture_res=SMALL_TEX)
    assert len(mesh.materials) == 3 and mesh.t_mat is not None
    counts = torch.bincount(mesh.t_mat, minlength=3)
    assert bool((counts > 0.1 * mesh.num_triangles).all())
    assert len({m.name for m in mesh.materials}) == 3
    constant = [m for m in mesh.materials if m.kd.shape[:2] == (1, 1)]
    assert len(constant) == 1, "one part should be a constant material"
    # Each part maps its own full UV range.
    for k in range(3):
        v = mesh.v_tex[mesh.t_tex_idx[mesh.t_mat == k]][..., 1]
        assert float(v.min()) == pytest.approx(0.0, abs=1e-6)
        assert float(v.max()) == pytest.approx(1.0, abs=1e-6)


# ---- demo pair --------------------------------------------------------------------

def test_beacon_glows_in_strips_and_windows_only() -> None:
    mesh = make("beacon", triangles=2000, seed=0, texture_res=64)
    m = mesh.materials[0]
    assert m.emissive is not None and m.emissive.shape == (64, 64, 3)
    glow = m.emissive.sum(-1)
    # a dark column: most of the map emits nothing, the panels emit above 1
    # (lamps: what KHR_materials_emissive_strength and map_Ke -mm are for)
    assert 0.05 < float((glow > 0).float().mean()) < 0.4
    assert float(m.emissive.max()) > 1.0 and float(m.emissive.min()) == 0.0
    # the three strips span every column at their rows (v = 0.3, 0.5, 0.7)
    for v in (0.3, 0.5, 0.7):
        assert float(glow[int(v * 64)].min()) > 1.0, v
    assert float(m.kd.max()) < 0.2  # a dark base, so the emission dominates
    # which windows are lit depends on the seed
    other = make("beacon", triangles=2000, seed=1, texture_res=64).materials[0].emissive
    assert not torch.equal(m.emissive, other)


def test_demo_pair() -> None:
    reference, base = demo_pair(seed=0)
    assert 20000 <= reference.num_triangles <= 40000
    assert 200 <= base.num_triangles <= 900 and base.has_uv
    base.validate()
    reference.validate()
    r_ref = float(reference.v_pos.norm(dim=1).median())
    assert float(base.v_pos.norm(dim=1).max()) == pytest.approx(r_ref, rel=1e-4)


# ---- errors -----------------------------------------------------------------------

def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(DiffLodError) as info:
        make("teapot")
    message = str(info.value)
    assert "teapot" in message and all(n in message for n in ASSETS)


@pytest.mark.parametrize("kwargs", [
    {"triangles": 5}, {"triangles": 4_000_001}, {"triangles": 1500.0}, {"triangles": True},
    {"seed": -1}, {"seed": "0"}, {"texture_res": 0}, {"texture_res": 100_000},
])
def test_bad_arguments_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(DiffLodError) as info:
        make("sphere", **kwargs)  # type: ignore[arg-type]
    assert next(iter(kwargs)) in str(info.value)


def test_vcolor_asset_carries_its_color_field_in_vertex_colors() -> None:
    from difflod.assets.vcolor import color_field

    mesh = make("vcolor", triangles=2000, seed=3)
    assert mesh.v_color is not None and mesh.v_color.shape == (mesh.num_vertices, 4)
    # the material is a plain white: all the appearance is in the vertex colors
    assert mesh.materials[0].kd.tolist() == [[[1.0, 1.0, 1.0]]]
    want = color_field(mesh.v_pos.double().numpy(), 3)
    assert float((mesh.v_color.double() - torch.from_numpy(want)).abs().max()) < 1e-6
    rgb = mesh.v_color[:, :3]
    assert float(rgb.min()) >= 0.1 - 1e-6 and float(rgb.max()) <= 0.9 + 1e-6
    assert float(rgb.std(0).min()) > 0.1  # every channel varies over the sphere
