"""Tests for the QEM baseline (difflod.base.baseline) and the texture bake."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difflod.base.bake import rasterize_uv
from difflod.base.baseline import baseline
from difflod.mesh import Material, Mesh


def _uv_sphere(rings: int = 48, segments: int = 96, kd: torch.Tensor | None = None) -> Mesh:
    """Unit sphere with a lat-long UV map (u around Y, v = theta / pi, 0 at the top)."""
    theta = torch.linspace(0, math.pi, rings + 1, dtype=torch.float64)
    phi = torch.linspace(0, 2 * math.pi, segments + 1, dtype=torch.float64)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    pos = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    uv = torch.stack([p / (2 * math.pi), t / math.pi], -1).reshape(-1, 2)
    faces = []
    n = segments + 1
    for r in range(rings):
        for s in range(segments):
            a, b = r * n + s, r * n + s + 1
            faces += [[a, a + n, b], [b, a + n, b + n]]
    idx = torch.tensor(faces, dtype=torch.int64)
    mat = Material(kd=kd) if kd is not None else Material()
    return Mesh(v_pos=pos.float(), t_pos_idx=idx, v_tex=uv.float(), t_tex_idx=idx.clone(),
                materials=(mat,)).validate()


def test_budget_met_and_mesh_valid() -> None:
    ref = _uv_sphere()
    out = baseline(ref, 800, texture_res=128)
    assert abs(out.num_triangles - 800) <= 0.05 * 800
    assert out.has_uv and out.materials[0].kd.shape == (128, 128, 3)
    assert out.materials[0].normal is not None
    out.validate()


def test_constant_color_is_baked_exactly() -> None:
    color = torch.tensor([[[0.2, 0.4, 0.6]]])
    ref = _uv_sphere(kd=color)
    out = baseline(ref, 600, texture_res=64)
    kd = out.materials[0].kd.reshape(-1, 3)
    assert torch.allclose(kd, color.reshape(1, 3).expand_as(kd), atol=1e-6)
    ks = out.materials[0].ks.reshape(-1, 3)
    assert torch.allclose(ks, torch.tensor([0.0, 0.5, 0.0]).expand_as(ks), atol=1e-6)


def test_gradient_texture_follows_the_surface() -> None:
    # kd red channel = v = theta/pi: after the bake, each texel's red equals
    # acos(y)/pi at the texel's 3D point on the decimated surface (up to facets).
    h = 256
    ramp = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    kd = torch.stack([ramp[:, None].expand(h, 4), torch.zeros(h, 4), torch.zeros(h, 4)], -1)
    ref = _uv_sphere(kd=kd)
    res = 128
    out = baseline(ref, 1500, texture_res=res, bake_normals=False)
    raster = rasterize_uv(out.v_tex.numpy(), out.t_tex_idx.numpy(), res)
    cov = raster.tri >= 0
    assert cov.mean() > 0.3
    corners = out.v_pos.numpy()[out.t_pos_idx.numpy()[raster.tri[cov]]]
    p = np.einsum("nk,nkc->nc", raster.bary[cov], corners)
    expect = np.arccos(np.clip(p[:, 1] / np.linalg.norm(p, axis=1), -1, 1)) / math.pi
    got = out.materials[0].kd.numpy()[cov][:, 0]
    assert np.median(np.abs(got - expect)) < 0.01
    assert np.percentile(np.abs(got - expect), 99) < 0.05


def test_normal_map_is_unit_and_mostly_up_on_a_smooth_sphere() -> None:
    out = baseline(_uv_sphere(), 400, texture_res=64)
    n = out.materials[0].normal.reshape(-1, 3)
    assert torch.allclose(n.norm(dim=1), torch.ones(n.shape[0]), atol=1e-4)
    assert float(n[:, 2].mean()) > 0.98


def test_rasterize_uv_covers_half_the_square() -> None:
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    r = rasterize_uv(uv, np.array([[0, 1, 2]]), 32)
    cov = r.tri >= 0
    # Texel centres (j+.5, i+.5)/32 inside u + v <= 1: 32*33/2 - 16 on the diagonal... count exactly.
    jj, ii = np.meshgrid(np.arange(32), np.arange(32))
    expect = ((jj + 0.5) + (ii + 0.5)) <= 32
    assert np.array_equal(cov, expect)
    assert np.allclose(r.bary[cov].sum(1), 1.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="triangles"):
        baseline(_uv_sphere(8, 16), 2)


def test_baseline_of_sphere_asset_renders_close_to_it() -> None:
    from difflod.assets import make
    from difflod.evaluate.evaluate import evaluate

    ref = make("sphere", triangles=4000, seed=0, texture_res=128)
    out = baseline(ref, 400, texture_res=128)
    untextured = out.replace(materials=(Material(),))
    res = evaluate(ref, {"baseline": out, "untextured": untextured}, views=3, res=64,
                   backend="cpu", chamfer_samples=2000)["candidates"]
    assert res["baseline"]["psnr"]["mean"] > 29.0
    assert res["baseline"]["ssim"]["mean"] > 0.95
    assert res["baseline"]["iou"]["mean"] > 0.97
    assert res["baseline"]["psnr"]["mean"] > res["untextured"]["psnr"]["mean"] + 10


def test_bake_tangents_follow_the_renderer_convention() -> None:
    """The bake's tangent frame equals geometry.tangents' (bitangent towards -v), so a
    baked normal map shades right with tangents recomputed anywhere else."""
    import numpy as np

    from difflod.assets import make
    from difflod.base.bake import vertex_normals as bake_normals
    from difflod.base.bake import vertex_tangents as bake_tangents
    from difflod.geometry.tangents import with_tangents

    mesh = make("sphere", triangles=400)
    pos, idx = mesh.v_pos.double().numpy(), mesh.t_pos_idx.numpy()
    uv, uv_idx = mesh.v_tex.double().numpy(), mesh.t_tex_idx.numpy()
    baked = bake_tangents(pos, idx, uv, uv_idx, bake_normals(pos, idx))
    ref = with_tangents(mesh)
    corner_ref = ref.v_tng[ref.t_tng_idx].reshape(-1, 4).numpy()
    corner_bake = baked[uv_idx].reshape(-1, 4)
    away_from_poles = np.abs(pos[idx].reshape(-1, 3)[:, 1]) < 0.8
    assert np.all(corner_ref[away_from_poles, 3] == corner_bake[away_from_poles, 3])
    cos = (corner_ref[away_from_poles, :3] * corner_bake[away_from_poles, :3]).sum(1)
    assert float(cos.min()) > 0.95


def test_to_image_fills_the_whole_atlas_from_the_charts() -> None:
    """The former 2-texel dilation and flat fill are gone: one covered texel fills
    everything (its nearest covered texel); no covered texel at all gives `empty`."""
    from difflod.base.bake import to_image

    covered = np.zeros((16, 16), dtype=bool)
    covered[3, 4] = True
    img = to_image(np.array([[0.25, 0.5, 0.75]]), covered, 16)
    assert np.array_equal(img, np.broadcast_to(np.float32([0.25, 0.5, 0.75]), (16, 16, 3)))
    empty = to_image(np.zeros((0, 3)), np.zeros((16, 16), bool), 16, (0.0, 0.0, 1.0))
    assert np.array_equal(empty, np.broadcast_to(np.float32([0.0, 0.0, 1.0]), (16, 16, 3)))
