"""Tests for difflod.scene.camera: projection, look_at, rotations, random rotations."""

from __future__ import annotations

import math

import pytest
import torch

from difflod.scene import camera


def _apply(m: torch.Tensor, p: list[float]) -> torch.Tensor:
    return m.double() @ torch.tensor([*p, 1.0], dtype=torch.float64)


def test_perspective_matches_nvdiffmodeling_without_y_flip():
    p = camera.perspective(camera.DEFAULT_FOVY, 1.0, near=1.0, far=1000.0)
    assert p.dtype == torch.float32 and p.shape == (4, 4)
    # nvdiffmodeling: projection(x=0.4, n=1, f=1000) with its y flipped back.
    expected = torch.tensor([[2.5, 0, 0, 0], [0, 2.5, 0, 0],
                             [0, 0, -1001.0 / 999.0, -2000.0 / 999.0], [0, 0, -1, 0]])
    torch.testing.assert_close(p, expected)


def test_perspective_maps_near_far_to_ndc_and_y_up():
    p = camera.perspective(math.radians(60), aspect=2.0, near=0.5, far=10.0)
    for z, ndc in ((-0.5, -1.0), (-10.0, 1.0)):
        c = _apply(p, [0.0, 0.0, z])
        assert c[2] / c[3] == pytest.approx(ndc, abs=1e-5)
    top = _apply(p, [0.0, math.tan(math.radians(30)) * 4.0, -4.0])
    assert top[1] / top[3] == pytest.approx(1.0, abs=1e-5)
    right = _apply(p, [2.0 * math.tan(math.radians(30)) * 4.0, 0.0, -4.0])
    assert right[0] / right[3] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("args, needle", [
    ((0.0, 1.0), r"fovy_rad must be in \(0, pi\), got 0.0"),
    ((math.pi, 1.0), r"fovy_rad must be in \(0, pi\), got 3.14"),
    ((1.0, 0.0), r"aspect must be > 0, got 0.0"),
    ((1.0, 1.0, 2.0, 1.0), r"0 < near < far, got near=2.0, far=1.0"),
    ((1.0, 1.0, 0.0, 1.0), r"0 < near < far, got near=0.0")])
def test_perspective_rejects_bad_arguments(args, needle):
    with pytest.raises(ValueError, match=needle):
        camera.perspective(*args)


def test_look_at_puts_target_on_negative_z():
    eye, at = [1.0, 2.0, 3.0], [0.5, -1.0, 0.0]
    v = camera.look_at(eye, at, [0.0, 1.0, 0.0])
    e = _apply(v, eye)
    torch.testing.assert_close(e[:3], torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    a = _apply(v, at)
    dist = math.dist(eye, at)
    torch.testing.assert_close(a[:3], torch.tensor([0.0, 0.0, -dist], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    r = v[:3, :3].double()
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    # up stays up: a point above the target maps to +y in view space.
    assert _apply(v, [0.5, 0.0, 0.0])[1] > 0


def test_look_at_rejects_degenerate():
    with pytest.raises(ValueError, match="coincide"):
        camera.look_at([1, 1, 1], [1, 1, 1], [0, 1, 0])
    with pytest.raises(ValueError, match="parallel"):
        camera.look_at([0, 3, 0], [0, 0, 0], [0, 1, 0])


def test_rotations_right_handed_and_translate():
    torch.testing.assert_close(_apply(camera.rotate_x(math.pi / 2), [0, 1, 0])[:3],
                               torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(_apply(camera.rotate_y(math.pi / 2), [0, 0, 1])[:3],
                               torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(_apply(camera.translate(1, 2, 3), [1, 1, 1])[:3],
                               torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64))


def test_random_rotation_is_proper_and_reproducible():
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a, b = camera.random_rotation(g1, 0.25), camera.random_rotation(g2, 0.25)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    r = a[:3, :3].double()
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.linalg.det(r) == pytest.approx(1.0, abs=1e-5)
    assert float(a[:3, 3].abs().max()) <= 0.25
    torch.testing.assert_close(a[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_random_rotation_is_uniform_over_so3():
    # Haar measure: each column of R is uniform on the sphere, so the mean of
    # R is 0 and E[R_ij^2] = 1/3; the trace has E[tr] = 0, E[tr^2] = 1.
    g = torch.Generator().manual_seed(0)
    rs = torch.stack([camera.random_rotation(g)[:3, :3].double() for _ in range(4000)])
    assert float(rs.mean(0).abs().max()) < 0.05
    torch.testing.assert_close(rs.pow(2).mean(0), torch.full((3, 3), 1 / 3, dtype=torch.float64),
                               atol=0.03, rtol=0)
    tr = rs.diagonal(dim1=1, dim2=2).sum(-1)
    assert float(tr.mean()) == pytest.approx(0.0, abs=0.06)
    assert float((tr * tr).mean()) == pytest.approx(1.0, abs=0.08)


def test_device_argument():
    assert camera.perspective(1.0, device="cpu").device.type == "cpu"
    assert camera.look_at([0, 0, 3], [0, 0, 0], [0, 1, 0], device="meta").device.type == "meta"
