"""Tests for difflod.shading.shade: normal maps, two-sided and bent normals."""

from __future__ import annotations

import math

import pytest
import torch

from difflod.shading import bsdf
from difflod.shading.shade import shade, shading_normal


def _plane(h: int = 4, w: int = 5, normal=(0.0, 0.0, 1.0), dtype=torch.float32):
    """A G-buffer of the plane z = 0 over [-1,1]^2 with the given normal."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=dtype),
                            torch.linspace(-1, 1, w, dtype=dtype), indexing="ij")
    pos = torch.stack([xs, ys, torch.zeros_like(xs)], -1)[None]
    nrm = torch.tensor(normal, dtype=dtype).expand(1, h, w, 3).clone()
    tng = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=dtype).expand(1, h, w, 4).clone()
    kd = torch.tensor([0.6, 0.4, 0.2], dtype=dtype).expand(1, h, w, 3).clone()
    ks = torch.tensor([0.0, 0.4, 0.3], dtype=dtype).expand(1, h, w, 3).clone()
    return pos, nrm, tng, kd, ks


VIEW = torch.tensor([[0.3, 0.2, 3.0]])
LIGHT = torch.tensor([[-1.0, 1.5, 2.5]])


def test_flat_normal_map_equals_geometric_normal():
    pos, nrm, tng, kd, ks = _plane()
    flat = torch.tensor([0.0, 0.0, 1.0]).expand(1, 4, 5, 3)
    a = shade(pos, nrm, nrm, tng, kd, ks, flat, VIEW, LIGHT, 5.0)
    b = shade(pos, nrm, nrm, None, kd, ks, None, VIEW, LIGHT, 5.0)
    assert a.shape == (1, 4, 5, 3)
    torch.testing.assert_close(a, b)
    # And both equal the BSDF with the plane normal, times the light power.
    ref = bsdf.pbr_bsdf(kd, ks, pos, nrm, VIEW[:, None, None], LIGHT[:, None, None]) * 5.0
    torch.testing.assert_close(a, ref)


def test_normal_map_tilts_along_tangent_and_handedness():
    pos, nrm, tng, _kd, _ks = _plane(1, 1)
    s = 1 / math.sqrt(2)
    view = pos + torch.tensor([0.0, 0.0, 1.0])
    tilt_x = torch.tensor([[[[s, 0.0, s]]]])
    tilt_y = torch.tensor([[[[0.0, s, s]]]])
    n = shading_normal(pos, view, nrm, nrm, tng, tilt_x)
    torch.testing.assert_close(n[0, 0, 0], torch.tensor([s, 0.0, s]))
    n = shading_normal(pos, view, nrm, nrm, tng, tilt_y)  # +Y: bitangent = cross(N, T) = +y
    torch.testing.assert_close(n[0, 0, 0], torch.tensor([0.0, s, s]))
    flipped = tng * torch.tensor([1.0, 1.0, 1.0, -1.0])
    n = shading_normal(pos, view, nrm, nrm, flipped, tilt_y)
    torch.testing.assert_close(n[0, 0, 0], torch.tensor([0.0, -s, s]))
    # normal_scale scales XY before normalising.
    n = shading_normal(pos, view, nrm, nrm, tng, tilt_x, normal_scale=0.0)
    torch.testing.assert_close(n[0, 0, 0], torch.tensor([0.0, 0.0, 1.0]))


def test_back_facing_surface_shades_like_front():
    pos, nrm, tng, kd, ks = _plane()
    front = shade(pos, nrm, nrm, tng, kd, ks, None, VIEW, LIGHT, 5.0)
    back = shade(pos, -nrm, -nrm, tng, kd, ks, None, VIEW, LIGHT, 5.0)
    torch.testing.assert_close(front, back)
    # Seen from below with the light below, the plane is lit the same way.
    mirror = torch.tensor([1.0, 1.0, -1.0])
    under = shade(pos, nrm, nrm, tng, kd, ks, None, VIEW * mirror, LIGHT * mirror, 5.0)
    torch.testing.assert_close(under, front)
    assert float(front.min()) > 0


def test_bent_normal_towards_geometric():
    pos, nrm, _tng, _kd, _ks = _plane(1, 1)
    view = pos + torch.tensor([0.0, 0.0, 1.0])
    # A shading normal pointing away from the viewer is replaced by the geometric one.
    away = torch.tensor([[[[1.0, 0.0, -0.2]]]])
    n = shading_normal(pos, view, nrm, away, None, None)
    torch.testing.assert_close(n[0, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    # One well inside the visible hemisphere is kept.
    ok = torch.tensor([[[[0.6, 0.0, 0.8]]]])
    torch.testing.assert_close(shading_normal(pos, view, nrm, ok, None, None), ok)


def test_no_nan_at_ninety_degrees_and_zero_normals():
    pos, nrm, tng, kd, ks = _plane(2, 2)
    kd = kd.clone().requires_grad_()
    side = torch.tensor([1.0, 0.0, 0.0]).expand(1, 2, 2, 3).clone().requires_grad_()
    zero = torch.zeros(1, 2, 2, 3, requires_grad=True)
    nmap = torch.tensor([1.0, 0.0, 0.0]).expand(1, 2, 2, 3).clone().requires_grad_()
    view = torch.tensor([[5.0, 0.0, 0.0]])  # viewer in the plane: n.v = 0
    for geo, smooth in ((nrm, side), (side, zero), (zero, nrm)):
        out = shade(pos, geo, smooth, tng, kd, ks, nmap, view, LIGHT, 5.0)
        assert bool(torch.isfinite(out).all())
        out.sum().backward()
        for t in (kd, side, zero, nmap):
            assert t.grad is None or bool(torch.isfinite(t.grad).all())


def test_light_power_and_falloff():
    pos, nrm, _tng, kd, ks = _plane(1, 1)
    a = shade(pos, nrm, nrm, None, kd, ks, None, VIEW, LIGHT, 1.0)
    b = shade(pos, nrm, nrm, None, kd, ks, None, VIEW, LIGHT, 4.0)
    torch.testing.assert_close(b, 4.0 * a)
    c = shade(pos, nrm, nrm, None, kd, ks, None, VIEW, LIGHT, 4.0, light_falloff=True)
    d2 = float(((LIGHT[0] - pos[0, 0, 0]) ** 2).sum())
    torch.testing.assert_close(c, b / d2)


def test_emissive_is_added_unlit():
    """glTF's model: color = BSDF x light + emissive. The emission does not
    depend on the light (power 0 leaves exactly it) nor on the view."""
    pos, nrm, _tng, kd, ks = _plane(2, 3)
    ke = torch.rand(1, 2, 3, 3, generator=torch.Generator().manual_seed(0)) * 3.0
    lit = shade(pos, nrm, nrm, None, kd, ks, None, VIEW, LIGHT, 5.0)
    got = shade(pos, nrm, nrm, None, kd, ks, None, VIEW, LIGHT, 5.0, gb_ke=ke)
    torch.testing.assert_close(got, lit + ke)
    dark = shade(pos, nrm, nrm, None, kd, ks, None, -VIEW, LIGHT, 0.0, gb_ke=ke)
    torch.testing.assert_close(dark, ke)
    with pytest.raises(ValueError, match="gb_ke"):
        shade(pos, nrm, nrm, None, kd, ks, None, VIEW, LIGHT, 5.0, gb_ke=ke[..., :2])


def test_gradcheck_shade_with_emissive():
    pos, nrm, _tng, kd, ks = _plane(2, 2, normal=(0.1, 0.0, 1.0), dtype=torch.float64)
    ke = torch.tensor([0.5, 1.5, 0.2], dtype=torch.float64).expand(1, 2, 2, 3).clone()
    args = [t.clone().requires_grad_() for t in (kd, ke)]
    view, light = VIEW.double(), LIGHT.double()

    def f(k, e):
        return shade(pos, nrm, nrm, None, k, ks, None, view, light, 5.0, gb_ke=e)

    assert torch.autograd.gradcheck(f, tuple(args))


def test_gradcheck_shade():
    pos, nrm, tng, kd, ks = _plane(2, 2, normal=(0.1, 0.0, 1.0), dtype=torch.float64)
    nmap = torch.tensor([0.2, -0.1, 0.9], dtype=torch.float64).expand(1, 2, 2, 3).clone()
    args = [t.clone().requires_grad_() for t in (pos, nrm, tng, kd, ks, nmap)]
    view, light = VIEW.double(), LIGHT.double()

    def f(p, n, t, k, s, m):
        return shade(p, nrm, n, t, k, s, m, view, light, 5.0)

    assert torch.autograd.gradcheck(f, tuple(args))


def test_bad_shapes_raise():
    pos, nrm, tng, kd, ks = _plane()
    with pytest.raises(ValueError, match="gb_ks"):
        shade(pos, nrm, nrm, tng, kd, ks[..., :2], None, VIEW, LIGHT, 5.0)
    with pytest.raises(ValueError, match="view_pos"):
        shade(pos, nrm, nrm, tng, kd, ks, None, VIEW[0], LIGHT, 5.0)
    with pytest.raises(ValueError, match="gb_tangent"):
        shade(pos, nrm, nrm, None, kd, ks, nrm, VIEW, LIGHT, 5.0)
