"""render_mesh with vertex colors: kd (and alpha) times the interpolated Mesh.v_color."""

from __future__ import annotations

import math

import pytest
import torch

from difflod.mesh import Material, Mesh
from difflod.render.pipeline import render_mesh
from difflod.scene.views import views_from_eye
from tests.render.test_pipeline import NO_SPEC, RES, _lambert_scale, _pixel_world, _quad


def _affine_color(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """An RGB field linear in (x, y): interpolating it over any triangle is exact."""
    return torch.stack([(x + 1) / 2, (y + 1) / 2, torch.full_like(x, 0.25)], dim=-1)


def _colored_quad(material: Material, alpha: float = 1.0) -> Mesh:
    quad = _quad(material)
    rgb = _affine_color(quad.v_pos[:, 0], quad.v_pos[:, 1])
    return quad.replace(v_color=torch.cat([rgb, torch.full((4, 1), alpha)], 1))


INNER = 0.9  # pixels well inside the quad (no edge pixels: antialias is off anyway)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_white_texture_renders_the_interpolated_vertex_colors(backend: str) -> None:
    quad = _colored_quad(Material(kd=torch.ones(8, 8, 3), ks=NO_SPEC))
    views = views_from_eye([0.0, 0.0, 3.5], light_power=math.pi)
    out = render_mesh(quad, views, (RES, RES), backend=backend, antialias=False)
    x, y = _pixel_world()
    inside = (x.abs() < INNER) & (y.abs() < INNER)
    want = _affine_color(x, y)[inside] * _lambert_scale(x, y)[inside][:, None]
    # float32 rounding of the barycentrics and the shading: 1e-4
    torch.testing.assert_close(out.color[0][inside], want, atol=1e-4, rtol=1e-4)


def test_texture_times_vertex_color_and_kd_gradient() -> None:
    kd = torch.tensor([[[0.5, 0.8, 0.6]]], requires_grad=True)
    quad = _colored_quad(Material(kd=kd, ks=NO_SPEC))
    views = views_from_eye([0.0, 0.0, 3.5], light_power=math.pi)
    out = render_mesh(quad, views, (RES, RES), backend="torch", antialias=False)
    x, y = _pixel_world()
    inside = (x.abs() < INNER) & (y.abs() < INNER)
    weight = _affine_color(x, y) * _lambert_scale(x, y)[..., None]       # [H,W,3]
    torch.testing.assert_close(out.color[0][inside], (weight * kd.detach()[0, 0])[inside],
                               atol=1e-4, rtol=1e-4)
    # d(sum of the quad's pixels)/d kd = sum of vertex color x shading over them
    covered = out.alpha[0, ..., 0] > 0
    out.color[0][covered].sum().backward()
    assert kd.grad is not None
    torch.testing.assert_close(kd.grad[0, 0], weight[covered].sum(0), atol=1e-3, rtol=1e-4)


def test_vertex_alpha_multiplies_blend_alpha_only() -> None:
    views = views_from_eye([0.0, 0.0, 3.5], light_power=math.pi)
    x, y = _pixel_world()
    inside = (x.abs() < INNER) & (y.abs() < INNER)
    kd = torch.ones(1, 1, 4)
    blend = _colored_quad(Material(kd=kd, ks=NO_SPEC, alpha_mode="BLEND"), alpha=0.25)
    out = render_mesh(blend, views, (RES, RES), backend="torch", antialias=False)
    torch.testing.assert_close(out.alpha[0][inside], torch.full((int(inside.sum()), 1), 0.25))
    # MASK: 0.25 < cutoff 0.5 cuts the whole quad away
    mask = _colored_quad(Material(kd=kd, ks=NO_SPEC, alpha_mode="MASK"), alpha=0.25)
    out = render_mesh(mask, views, (RES, RES), backend="torch", antialias=False)
    assert float(out.alpha.max()) == 0.0
    opaque = _colored_quad(Material(kd=kd, ks=NO_SPEC), alpha=0.25)
    out = render_mesh(opaque, views, (RES, RES), backend="torch", antialias=False)
    assert float(out.alpha[0][inside].min()) == 1.0
