"""Tests for difflod.shading.bsdf against plain formulas, bounds and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from difflod.shading import bsdf

D64 = torch.float64


def _t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=D64)


def _dir(theta: float, phi: float = 0.0) -> torch.Tensor:
    return _t(math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta))


N = _t(0.0, 0.0, 1.0)


def test_lambert_values():
    assert float(bsdf.lambert(N, N)) == pytest.approx(1 / math.pi)
    assert float(bsdf.lambert(N, _dir(math.pi / 3))) == pytest.approx(0.5 / math.pi)
    assert float(bsdf.lambert(N, _dir(2.0))) == 0.0


def test_fresnel_schlick_values():
    f0 = _t(0.04)
    assert float(bsdf.fresnel_schlick(f0, 1.0, _t(1.0))) == pytest.approx(0.04, abs=1e-12)
    assert float(bsdf.fresnel_schlick(f0, 1.0, _t(0.5))) == pytest.approx(0.04 + 0.96 / 32)
    assert float(bsdf.fresnel_schlick(f0, 1.0, _t(0.0))) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_ndf_peak_and_normalisation(alpha):
    a2 = _t(alpha * alpha)
    peak = float(bsdf.ndf_ggx(a2, _t(1.0)))
    assert peak == pytest.approx(1 / (math.pi * alpha ** 2), rel=5e-3)
    # Projected-area normalisation: int D(h) (n.h) dw_h = 1 over the hemisphere.
    th = torch.linspace(0, math.pi / 2, 200001, dtype=D64)
    f = bsdf.ndf_ggx(a2, torch.cos(th)) * torch.cos(th) * torch.sin(th) * 2 * math.pi
    assert float(torch.trapezoid(f, th)) == pytest.approx(1.0, abs=2e-3)


def test_lambda_and_masking():
    assert float(bsdf.lambda_ggx(_t(0.25), _t(0.6))) == pytest.approx(
        0.5 * (math.sqrt(1 + 0.25 * 0.64 / 0.36) - 1), rel=1e-9)
    assert float(bsdf.lambda_ggx(_t(0.25), _t(1.0))) == pytest.approx(0.0, abs=1e-4)
    a2 = torch.rand(500, dtype=D64) * 0.99 + 0.01
    co, ci = torch.rand(500, dtype=D64), torch.rand(500, dtype=D64)
    g2 = bsdf.masking_smith_ggx_correlated(a2, co, ci)
    g1o = 1 / (1 + bsdf.lambda_ggx(a2, co))
    g1i = 1 / (1 + bsdf.lambda_ggx(a2, ci))
    assert bool(((g2 > 0) & (g2 <= 1)).all())
    assert bool((g2 <= torch.minimum(g1o, g1i) + 1e-12).all())
    assert bool((g2 >= g1o * g1i - 1e-12).all())


def test_specular_normal_incidence_peak():
    rough = 0.5
    alpha = rough * rough
    f0 = _t(0.04, 0.5, 1.0)
    s = bsdf.pbr_specular(f0, N, N, N, _t(alpha))
    torch.testing.assert_close(s, f0 / (4 * math.pi * alpha * alpha), rtol=5e-3, atol=0)


def test_specular_directional_albedo_at_most_one():
    # With F = 1 the reflected energy int f cos dw_i must stay in (0, 1].
    for theta_o in (0.0, 0.8, 1.4):
        wo = _dir(theta_o)
        th = torch.linspace(0, math.pi / 2, 400, dtype=D64)
        ph = torch.linspace(0, 2 * math.pi, 400, dtype=D64)
        tt, pp = torch.meshgrid(th, ph, indexing="ij")
        wi = torch.stack([torch.sin(tt) * torch.cos(pp), torch.sin(tt) * torch.sin(pp),
                          torch.cos(tt)], -1)
        for rough in (0.3, 0.7, 1.0):
            s = bsdf.pbr_specular(_t(1.0), N, wo, wi, _t(rough * rough))[..., 0]
            albedo = torch.trapezoid(torch.trapezoid(s * torch.sin(tt), ph, dim=1), th)
            assert 0.3 < float(albedo) <= 1.01


def test_pbr_bsdf_channels():
    pos, view, light = _t(0, 0, 0), _t(0, 0, 2), _t(0, 0, 3)
    kd = _t(0.2, 0.4, 0.6)
    dielectric = bsdf.pbr_bsdf(kd, _t(0.0, 0.5, 0.0), pos, N, view, light)
    spec = 0.04 / (4 * math.pi * 0.0625)
    # glTF's fresnel_mix: the diffuse keeps 1 - F = 0.96 at normal incidence
    torch.testing.assert_close(dielectric, kd / math.pi * 0.96 + spec, rtol=5e-3, atol=0)
    no_spec = bsdf.pbr_bsdf(kd, _t(1.0, 0.5, 0.0), pos, N, view, light)
    torch.testing.assert_close(no_spec, kd / math.pi)
    metal = bsdf.pbr_bsdf(kd, _t(0.0, 0.5, 1.0), pos, N, view, light)
    torch.testing.assert_close(metal, kd / (4 * math.pi * 0.0625), rtol=5e-3, atol=0)
    # KHR_materials_specular strength s = 1 - ks.x scales the dielectric's f0 = 0.04 s (and
    # f90 = s); the diffuse keeps 1 - 0.04 s at normal incidence; metals are unaffected
    half = bsdf.pbr_bsdf(kd, _t(0.5, 0.5, 0.0), pos, N, view, light)
    torch.testing.assert_close(half, kd / math.pi * 0.98 + spec / 2, rtol=5e-3, atol=0)
    metal_no_spec = bsdf.pbr_bsdf(kd, _t(1.0, 0.5, 1.0), pos, N, view, light)
    torch.testing.assert_close(metal_no_spec, metal)
    # Roughness below min_roughness is clamped.
    r0 = bsdf.pbr_bsdf(kd, _t(0.0, 0.0, 0.0), pos, N, view, light, min_roughness=0.08)
    r8 = bsdf.pbr_bsdf(kd, _t(0.0, 0.08, 0.0), pos, N, view, light, min_roughness=0.08)
    torch.testing.assert_close(r0, r8)
    # Light below the surface: black.
    assert float(bsdf.pbr_bsdf(kd, _t(0, 0.5, 0), pos, N, view, _t(0, 0, -3)).abs().max()) == 0


def test_grazing_is_finite_with_finite_gradients():
    n = torch.tensor([[0.0, 0.0, 1.0]] * 4, dtype=torch.float32, requires_grad=True)
    pos = torch.zeros(4, 3, requires_grad=True)
    view = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 1e-7], [0, 0, 0]])
    light = torch.tensor([[0, 1.0, 0], [1.0, 0, 1e-8], [0, 0, 1.0], [0, 0, 0]])
    kd = torch.full((4, 3), 0.5, requires_grad=True)
    arm = torch.tensor([[0.0, 0.0, 0.5]] * 4, requires_grad=True)
    out = bsdf.pbr_bsdf(kd, arm, pos, n, view, light)
    assert bool(torch.isfinite(out).all())
    out.sum().backward()
    for t in (n, pos, kd, arm):
        assert bool(torch.isfinite(t.grad).all())


def test_gradcheck_pbr_bsdf():
    g = torch.Generator().manual_seed(0)
    kd = torch.rand(6, 3, generator=g, dtype=D64).requires_grad_()
    arm = torch.stack([torch.rand(6, generator=g, dtype=D64) * 0.5,
                       torch.rand(6, generator=g, dtype=D64) * 0.6 + 0.3,
                       torch.rand(6, generator=g, dtype=D64)], -1).requires_grad_()
    pos = (torch.rand(6, 3, generator=g, dtype=D64) * 0.2).requires_grad_()
    nrm = bsdf.safe_normalize(torch.tensor([[0.1, 0.2, 1.0]], dtype=D64).repeat(6, 1)
                              + 0.1 * torch.rand(6, 3, generator=g, dtype=D64)).detach()
    nrm.requires_grad_()
    view = torch.tensor([[0.5, 0.3, 3.0]], dtype=D64, requires_grad=True)
    light = torch.tensor([[-1.0, 0.5, 2.0]], dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: bsdf.pbr_bsdf(*a),
                                     (kd, arm, pos, nrm, view, light))
