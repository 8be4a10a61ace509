"""Tests for difflod.render.pipeline.render_mesh on small procedural scenes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from difflod.mesh import Material, Mesh
from difflod.render.pipeline import render_mesh
from difflod.scene.views import background, views_from_eye

BACKEND = "torch"
RES = 24
HALF = 3.5 * 0.4  # half extent of the view at z = 0 for the default camera


def _quad(material: Material, z: float = 0.0, size: float = 1.0) -> Mesh:
    """Square [-size,size]^2 at height z facing +z, UV (0,0) at its bottom-left."""
    s = size
    v_pos = torch.tensor([[-s, -s, z], [s, -s, z], [s, s, z], [-s, s, z]])
    v_tex = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return Mesh(v_pos=v_pos, t_pos_idx=tris, v_tex=v_tex, t_tex_idx=tris.clone(),
                materials=(material,))


def _blocks(colors: list[list[float]], n: int = 8) -> torch.Tensor:
    """`[n,n,C]` texture made of 2x2 uniform blocks: rows 0..n/2-1 use colors[0:2]."""
    c = torch.tensor(colors, dtype=torch.float32)
    tex = torch.empty(n, n, c.shape[1])
    h = n // 2
    tex[:h, :h], tex[:h, h:], tex[h:, :h], tex[h:, h:] = c[0], c[1], c[2], c[3]
    return tex


def _pixel_world(res: int = RES) -> tuple[torch.Tensor, torch.Tensor]:
    """World x, y on the plane z = 0 of every pixel centre (row 0 = bottom)."""
    ndc = (2 * torch.arange(res) + 1) / res - 1
    y, x = torch.meshgrid(ndc * HALF, ndc * HALF, indexing="ij")
    return x, y


NO_SPEC = torch.tensor([[[1.0, 1.0, 0.0]]])  # channel 0 = 1: f0 = 0, only a ~1e-30 Fresnel rim


def _lambert_scale(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max(n.l, 0)/pi * power (pi) for the light at the eye (0, 0, 3.5)."""
    return 3.5 / torch.sqrt(x * x + y * y + 3.5 ** 2)


def test_textured_quad_shows_texture():
    colors = [[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.8, 0.8, 0.2]]
    quad = _quad(Material(kd=_blocks(colors), ks=NO_SPEC))
    views = views_from_eye([0.0, 0.0, 3.5], light_power=math.pi)
    bg = background("checker", 1, RES, RES)
    out = render_mesh(quad, views, (RES, RES), background=bg, backend=BACKEND, antialias=False)
    assert out.color.shape == (1, RES, RES, 3) and out.alpha.shape == (1, RES, RES, 1)
    x, y = _pixel_world()
    scale = _lambert_scale(x, y)
    for k, (sx, sy) in enumerate(((-1, -1), (1, -1), (-1, 1), (1, 1))):
        inner = (x * sx > 0.3) & (x * sx < 0.7) & (y * sy > 0.3) & (y * sy < 0.7)
        assert int(inner.sum()) >= 4
        expected = torch.tensor(colors[k]) * scale[inner][:, None]
        torch.testing.assert_close(out.color[0][inner], expected, atol=1e-4, rtol=1e-4)
    outside = (x.abs() > 1.05) | (y.abs() > 1.05)
    torch.testing.assert_close(out.color[0][outside], bg[0][outside])
    assert float(out.alpha[0][outside].abs().max()) == 0.0
    assert float(out.alpha[0][(x.abs() < 0.95) & (y.abs() < 0.95)].min()) == 1.0
    assert int(out.rast[0, RES // 2, RES // 2, 3]) in (1, 2)


def test_alpha_mask_leaves_holes_and_blend_mixes():
    kd = _blocks([[0.5, 0.5, 0.5, 0.0], [0.5, 0.5, 0.5, 1.0],
                  [0.5, 0.5, 0.5, 0.0], [0.5, 0.5, 0.5, 1.0]])
    views = views_from_eye([0.0, 0.0, 3.5], light_power=math.pi)
    bg = torch.ones(1, RES, RES, 3)
    x, y = _pixel_world()
    left = (x < -0.3) & (x > -0.7) & (y.abs() < 0.7)
    right = (x > 0.3) & (x < 0.7) & (y.abs() < 0.7)
    mask = _quad(Material(kd=kd, ks=NO_SPEC, alpha_mode="MASK", alpha_cutoff=0.5))
    out = render_mesh(mask, views, (RES, RES), background=bg, backend=BACKEND, antialias=False)
    torch.testing.assert_close(out.color[0][left], torch.ones(int(left.sum()), 3))
    assert float(out.alpha[0][left].abs().max()) == 0.0
    assert float((out.color[0][right] - 0.5).abs().max()) < 0.05
    # Half-transparent BLEND: half background, half surface.
    kd_half = kd.clone()
    kd_half[..., 3] = 0.5
    blend = _quad(Material(kd=kd_half, ks=NO_SPEC, alpha_mode="BLEND"))
    out = render_mesh(blend, views, (RES, RES), background=bg, backend=BACKEND, antialias=False)
    scale = _lambert_scale(x, y)[right][:, None]
    torch.testing.assert_close(out.color[0][right], 0.5 + 0.25 * scale.expand(-1, 3),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.alpha[0][right], torch.full((int(right.sum()), 1), 0.5))


def test_mask_gradient_reaches_alpha():
    kd = torch.full((4, 4, 4), 0.6, requires_grad=True)
    quad = _quad(Material(kd=kd, alpha_mode="MASK"))
    views = views_from_eye([0.0, 0.0, 3.5])
    out = render_mesh(quad, views, (8, 8), backend=BACKEND, antialias=False,
                      background=torch.ones(1, 8, 8, 3))
    out.color.sum().backward()
    assert float(kd.grad[..., 3].abs().sum()) > 0


def test_spp_is_average_of_supersampled_render():
    quad = _quad(Material(kd=_blocks([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])), size=0.8)
    views = views_from_eye([0.4, 0.3, 3.5])
    bg = background("checker", 1, 12, 12)
    big_bg = bg.repeat_interleave(2, 1).repeat_interleave(2, 2)
    for aa in (False, True):
        small = render_mesh(quad, views, (12, 12), spp=2, background=bg, backend=BACKEND,
                            antialias=aa)
        big = render_mesh(quad, views, (24, 24), background=big_bg, backend=BACKEND,
                          antialias=aa)
        pooled = torch.nn.functional.avg_pool2d(big.color.permute(0, 3, 1, 2), 2)
        torch.testing.assert_close(small.color, pooled.permute(0, 2, 3, 1))
        assert small.rast.shape == (1, 24, 24, 4)


def test_gradients_reach_positions_and_textures():
    v_pos = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -0.8, 0.1], [0.9, 1.0, 0.0],
                          [-1.0, 0.9, -0.1]], requires_grad=True)
    kd = torch.rand(4, 4, 3, requires_grad=True)
    ks = torch.tensor([[[0.0, 0.4, 0.2]]], requires_grad=True)
    nmap = torch.tensor([[[0.1, 0.0, 1.0]]]).expand(2, 2, 3).clone().requires_grad_()
    mesh = _quad(Material(kd=kd, ks=ks, normal=nmap)).replace(v_pos=v_pos)
    views = views_from_eye([0.5, 0.2, 3.5])
    out = render_mesh(mesh, views, (16, 16), backend=BACKEND,
                      background=torch.full((1, 16, 16, 3), 0.3))
    (out.color * torch.rand_like(out.color)).sum().backward()
    for name, t in (("v_pos", v_pos), ("kd", kd), ("ks", ks), ("normal", nmap)):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all()), name
        assert float(t.grad.abs().sum()) > 0, name
    # Silhouette: moving a corner outwards changes coverage, so x/y get gradients.
    assert float(v_pos.grad[:, :2].abs().sum()) > 0


def test_flat_normal_map_matches_no_normal_map():
    base = Material(kd=torch.tensor([[[0.4, 0.5, 0.6]]]), ks=torch.tensor([[[0.0, 0.3, 0.0]]]))
    flat = Material(kd=base.kd, ks=base.ks, normal=torch.tensor([[[0.0, 0.0, 1.0]]]))
    views = views_from_eye([0.5, 0.5, 3.0])
    a = render_mesh(_quad(base), views, (16, 16), backend=BACKEND, antialias=False)
    b = render_mesh(_quad(flat), views, (16, 16), backend=BACKEND, antialias=False)
    torch.testing.assert_close(a.color, b.color, atol=1e-5, rtol=1e-5)


def test_multi_material_selects_per_triangle():
    red = Material(name="red", kd=torch.tensor([[[1.0, 0.0, 0.0]]]), ks=NO_SPEC)
    green = Material(name="green", kd=torch.tensor([[[0.0, 1.0, 0.0]]]), ks=NO_SPEC)
    quad = _quad(red)
    mesh = quad.replace(materials=(red, green), t_mat=torch.tensor([0, 1]))
    out = render_mesh(mesh, views_from_eye([0.0, 0.0, 3.5]), (RES, RES), backend=BACKEND,
                      antialias=False)
    x, y = _pixel_world()
    lower_right = (x > 0.2) & (y < -0.2) & (x < 0.9) & (y > -0.9) & (x + y > 0.1)
    upper_left = (x < -0.2) & (y > 0.2) & (x > -0.9) & (y < 0.9)
    c = out.color[0]
    assert bool((c[lower_right][:, 0] > 0.1).all()) and float(c[lower_right][:, 1].max()) < 1e-6
    assert bool((c[upper_left][:, 1] > 0.1).all()) and float(c[upper_left][:, 0].max()) < 1e-6


def test_two_layers_composite_front_to_back():
    front = _quad(Material(kd=torch.tensor([[[1.0, 1.0, 1.0, 0.5]]]), ks=NO_SPEC,
                           alpha_mode="BLEND"), z=0.5)
    back = _quad(Material(kd=torch.tensor([[[0.0, 0.0, 0.0, 0.5]]]), ks=NO_SPEC,
                          alpha_mode="BLEND"), z=0.0)
    both = Mesh(v_pos=torch.cat([front.v_pos, back.v_pos]),
                t_pos_idx=torch.cat([front.t_pos_idx, back.t_pos_idx + 4]),
                v_tex=torch.cat([front.v_tex, back.v_tex]),
                t_tex_idx=torch.cat([front.t_tex_idx, back.t_tex_idx + 4]),
                materials=(*front.materials, *back.materials),
                t_mat=torch.tensor([0, 0, 1, 1]))
    views = views_from_eye([0.0, 0.0, 3.5], light_power=math.pi)
    bg = torch.ones(1, 8, 8, 3)
    one = render_mesh(both, views, (8, 8), layers=1, background=bg, backend=BACKEND,
                      antialias=False)
    two = render_mesh(both, views, (8, 8), layers=2, background=bg, backend=BACKEND,
                      antialias=False)
    c = (3, 3)
    s = float(one.color[0, c[0], c[1], 0] - 0.5) / 0.5  # lambert scale of the front layer
    # One layer: white front (alpha 0.5) over the white background = 0.5 + 0.5 s.
    # Two: the black back layer first darkens the background to 0.5, so 0.25 less.
    assert float(two.color[0, c[0], c[1], 0]) == pytest.approx(
        float(one.color[0, c[0], c[1], 0]) - 0.25, abs=1e-5)
    assert float(two.alpha[0, c[0], c[1], 0]) == pytest.approx(0.75)
    assert float(one.alpha[0, c[0], c[1], 0]) == pytest.approx(0.5)
    assert 0.9 < s <= 1.0


def test_empty_mesh_renders_background():
    empty = Mesh(v_pos=torch.zeros(0, 3), t_pos_idx=torch.zeros(0, 3, dtype=torch.int64))
    bg = background("checker", 2, 8, 8)
    from difflod.scene.views import sample_views
    views = sample_views(2, torch.Generator().manual_seed(0))
    out = render_mesh(empty, views, (8, 8), background=bg, backend=BACKEND)
    torch.testing.assert_close(out.color, bg)
    assert float(out.alpha.abs().max()) == 0.0


def test_bad_arguments():
    quad = _quad(Material())
    views = views_from_eye([0.0, 0.0, 3.5])
    with pytest.raises(ValueError, match="background"):
        render_mesh(quad, views, (8, 8), background=torch.zeros(1, 4, 4, 3), backend=BACKEND)
    with pytest.raises(ValueError, match="spp"):
        render_mesh(quad, views, (8, 8), spp=0, backend=BACKEND)
    with pytest.raises(ValueError, match="mips"):
        render_mesh(quad, views, (8, 8), mips={"albedo": []}, backend=BACKEND)
    no_uv = quad.replace(v_tex=None, t_tex_idx=None,
                         materials=(Material(kd=torch.rand(4, 4, 3)),))
    with pytest.raises(ValueError, match="no UVs"):
        render_mesh(no_uv, views, (8, 8), backend=BACKEND)


def test_custom_mips_are_used_and_trained():
    kd = torch.full((16, 16, 3), 0.2)
    coarse = [torch.full((16 >> k, 16 >> k, 3), 0.8, requires_grad=True) for k in range(1, 5)]
    quad = _quad(Material(kd=kd, ks=NO_SPEC))
    views = views_from_eye([0.0, 0.0, 3.5], light_power=math.pi)
    plain = render_mesh(quad, views, (6, 6), backend=BACKEND, antialias=False)
    custom = render_mesh(quad, views, (6, 6), backend=BACKEND, antialias=False,
                         mips={"kd": [kd, *coarse]})
    inside = plain.alpha[0, ..., 0] > 0
    # 16 texels over ~4 pixels: the lookups come from the coarse (0.8) levels.
    assert float(plain.color[0][inside].max()) < 0.21
    assert float(custom.color.detach()[0][inside].min()) > 0.5
    custom.color.sum().backward()
    assert sum(float(c.grad.abs().sum()) for c in coarse if c.grad is not None) > 0


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_prebuilt_mip_stacks_of_every_material_render_as_built_per_lookup(backend: str):
    """mip_stacks (one mapping per material, built once) renders a two-material
    mesh as the pyramids built by each lookup do; a stack given for material 1
    only is read for material 1 (a list entry per material)."""
    from difflod.render.materials import mip_stacks

    g = torch.Generator().manual_seed(5)
    left = _quad(Material(kd=torch.rand(16, 16, 3, generator=g), ks=NO_SPEC), size=0.6)
    right = _quad(Material(kd=torch.rand(32, 32, 3, generator=g), ks=NO_SPEC,
                           normal=torch.rand(8, 8, 3, generator=g) * 2 - 1), size=0.6)
    right = right.replace(v_pos=right.v_pos + torch.tensor([1.3, 0.0, -0.5]))
    both = Mesh(v_pos=torch.cat([left.v_pos, right.v_pos]),
                t_pos_idx=torch.cat([left.t_pos_idx, right.t_pos_idx + 4]),
                v_tex=torch.cat([left.v_tex, right.v_tex]),
                t_tex_idx=torch.cat([left.t_tex_idx, right.t_tex_idx + 4]),
                t_mat=torch.tensor([0, 0, 1, 1]), materials=(left.materials[0],
                                                             right.materials[0]))
    views = views_from_eye([0.4, 0.3, 3.5], light_power=math.pi)
    plain = render_mesh(both, views, (20, 20), backend=backend)
    stacks = mip_stacks(both)
    assert [sorted(s) for s in stacks] == [["kd"], ["kd", "normal"]]
    assert [t.shape[0] for t in stacks[1]["kd"]] == [32, 16, 8, 4, 2, 1]
    given = render_mesh(both, views, (20, 20), backend=backend, mips=stacks)
    torch.testing.assert_close(given.color, plain.color, rtol=1e-5, atol=1e-6)
    # a stack whose coarse levels differ shows up where material 1 is drawn, only there
    odd = [None, {"kd": [stacks[1]["kd"][0]] + [torch.zeros_like(t) for t in stacks[1]["kd"][1:]]}]
    changed = render_mesh(both, views, (20, 20), backend=backend, mips=odd).color
    diff = (changed - plain.color).abs().amax(-1)[0]
    assert float(diff.max()) > 0.05
    assert float(diff[:, :6].max()) == 0.0  # the left quad (material 0) as before
    with pytest.raises(ValueError, match="mips keys"):
        render_mesh(both, views, (8, 8), backend=backend, mips=[{}, {"albedo": []}])
    with pytest.raises(ValueError, match="list of mappings"):
        render_mesh(both, views, (8, 8), backend=backend, mips=[stacks[0]["kd"]])


def test_render_mesh_validates_the_mesh_by_default():
    """A texture index past v_tex raises by default; validate=False is for callers that
    checked the mesh already (the trainer), and then nothing is read out of range: the
    cpu kernels give that triangle's pixels a zero attribute (render_mesh's docstring),
    so it renders exactly as if its three UVs were (0, 0)."""
    import dataclasses

    from difflod.assets import make

    mesh = make("sphere", triangles=80, texture_res=16)
    views = views_from_eye([0.0, 0.0, 3.5])
    good = render_mesh(mesh, views, (16, 16), backend="cpu")
    seen = good.rast[..., 3].long().unique()
    t = int(seen[seen > 0][0]) - 1                    # a triangle that covers pixels
    bad_idx = mesh.t_tex_idx.clone()
    bad_idx[t, 0] = mesh.v_tex.shape[0] + 5
    bad = dataclasses.replace(mesh, t_tex_idx=bad_idx)
    with pytest.raises(ValueError, match="t_tex_idx"):
        render_mesh(bad, views, (16, 16), backend="cpu")
    out = render_mesh(bad, views, (16, 16), backend="cpu", validate=False)
    zero_idx = mesh.t_tex_idx.clone()
    zero_idx[t] = mesh.v_tex.shape[0]
    zero_uv = dataclasses.replace(mesh, v_tex=torch.cat([mesh.v_tex, torch.zeros(1, 2)]),
                                  t_tex_idx=zero_idx)
    expect = render_mesh(zero_uv, views, (16, 16), backend="cpu")
    torch.testing.assert_close(out.color, expect.color, rtol=0, atol=1e-6)
    assert float((out.color - good.color).abs().max()) > 0.05  # the triangle is in view


def test_emissive_quad_adds_its_texture_unlit():
    """Emission seen head on: color = lit kd + the emissive texel, for each block;
    with the light off (power 0) exactly the emissive texture."""
    kd_colors = [[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.8, 0.8, 0.2]]
    ke_colors = [[0.0, 0.0, 0.0], [2.5, 1.0, 0.0], [0.3, 0.6, 0.9], [0.0, 4.0, 0.5]]
    quad = _quad(Material(kd=_blocks(kd_colors), ks=NO_SPEC, emissive=_blocks(ke_colors)))
    x, y = _pixel_world()
    scale = _lambert_scale(x, y)
    for power in (math.pi, 0.0):
        views = views_from_eye([0.0, 0.0, 3.5], light_power=power)
        out = render_mesh(quad, views, (RES, RES), backend=BACKEND, antialias=False)
        for k, (sx, sy) in enumerate(((-1, -1), (1, -1), (-1, 1), (1, 1))):
            inner = (x * sx > 0.3) & (x * sx < 0.7) & (y * sy > 0.3) & (y * sy < 0.7)
            lit = torch.tensor(kd_colors[k]) * scale[inner][:, None] * (power / math.pi)
            expected = lit + torch.tensor(ke_colors[k])
            torch.testing.assert_close(out.color[0][inner], expected, atol=1e-4, rtol=1e-4)


def test_emissive_of_one_material_only_and_its_gradient():
    """A material without emissive emits 0 beside one with it; the gradient of
    the image reaches the emissive texture and its mip stack, and matches finite
    differences (the texture enters linearly, so d(sum color)/d(texel) is the
    texel's total filter weight)."""
    glow = torch.full((4, 4, 3), 0.5, requires_grad=True)
    red = Material(name="red", kd=torch.tensor([[[1.0, 0.0, 0.0]]]), ks=NO_SPEC, emissive=glow)
    dark = Material(name="dark", kd=torch.tensor([[[0.0, 0.0, 0.0]]]), ks=NO_SPEC)
    mesh = _quad(red).replace(materials=(red, dark), t_mat=torch.tensor([0, 1]))
    views = views_from_eye([0.0, 0.0, 3.5], light_power=0.0)
    out = render_mesh(mesh, views, (RES, RES), backend=BACKEND, antialias=False)
    x, y = _pixel_world()
    lower_right = (x > 0.2) & (y < -0.2) & (x < 0.9) & (y > -0.9) & (x + y > 0.1)
    upper_left = (x < -0.2) & (y > 0.2) & (x > -0.9) & (y < 0.9)
    c = out.color.detach()[0]
    torch.testing.assert_close(c[lower_right], torch.full_like(c[lower_right], 0.5))
    assert float(c[upper_left].abs().max()) == 0.0
    out.color.sum().backward()
    assert glow.grad is not None
    # the sum is linear in the texels: a step of 1 on every texel adds its gradient sum
    with torch.no_grad():
        brighter = mesh.replace(materials=(dataclasses.replace(red, emissive=glow + 1.0), dark))
        step = render_mesh(brighter, views, (RES, RES), backend=BACKEND, antialias=False)
    torch.testing.assert_close(float(glow.grad.sum()),
                               float(step.color.sum() - out.color.detach().sum()), rtol=1e-4,
                               atol=1e-3)
    assert float(glow.grad.sum()) > 0
