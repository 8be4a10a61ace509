"""Tests for difflod.evaluate.metrics: reference values and limiting cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from difflod.evaluate.metrics import (
    chamfer_distance,
    flip,
    flip_error_map,
    psnr,
    silhouette_iou,
    ssim,
    to_srgb,
)
from difflod.mesh import Mesh


def _image(seed: int, h: int = 48, w: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 8, w // 8, generator=g)
    img = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return img[0].permute(1, 2, 0).contiguous()


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as skimage computes it (gaussian_weights, sigma 1.5, population covariance),
    written independently with scipy's gaussian_filter: filter, then crop 5 pixels."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for c in range(a.shape[-1]):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        filt = lambda t: gaussian_filter(t, sigma=1.5, truncate=3.5)
        ux, uy = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - ux * ux, filt(y * y) - uy * uy, filt(x * y) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * cxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def test_psnr_identical_is_inf() -> None:
    a = _image(0)
    assert psnr(a, a.clone()) == math.inf


def test_psnr_known_noise() -> None:
    a = _image(1).double()
    noise = torch.full_like(a, 0.05)
    noise[::2] *= -1
    b = a + noise
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.05 ** 2), abs=1e-6)
    assert psnr(a, b, max_val=2.0) == pytest.approx(10 * math.log10(4 / 0.05 ** 2), abs=1e-6)


def test_psnr_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))


def test_ssim_identical_is_one_and_noise_lowers_it() -> None:
    a = _image(2)
    assert ssim(a, a.clone()) == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(3)
    small = (a + 0.02 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    large = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    s_small, s_large = ssim(a, small), ssim(a, large)
    assert 1.0 > s_small > s_large


def test_ssim_matches_independent_reference() -> None:
    a, b = _image(4), _image(5)
    assert ssim(a, b) == pytest.approx(_ssim_reference(a.numpy(), b.numpy()), abs=1e-9)


def test_ssim_of_constant_images_is_luminance_term() -> None:
    # Constant images: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a = torch.full((16, 16, 3), 0.3)
    b = torch.full((16, 16, 3), 0.6)
    c1 = 0.01 ** 2
    expect = (2 * 0.3 * 0.6 + c1) / (0.3 ** 2 + 0.6 ** 2 + c1)
    assert ssim(a, b) == pytest.approx(expect, rel=1e-6)


def test_ssim_batched_equals_mean_of_singles() -> None:
    a = torch.stack([_image(6), _image(7)])
    b = torch.stack([_image(8), _image(9)])
    singles = [ssim(a[i], b[i]) for i in range(2)]
    assert ssim(a, b) == pytest.approx(sum(singles) / 2, abs=1e-12)


def test_flip_identical_is_zero_and_differs_otherwise() -> None:
    a = _image(10)
    assert flip(a, a.clone()) == pytest.approx(0.0, abs=1e-7)
    err, mean = flip_error_map(a, 1.0 - a)
    assert err.shape == (48, 40)
    assert mean > 0.1
    assert float(err.mean()) == pytest.approx(mean, rel=1e-3)


def test_silhouette_iou() -> None:
    m = torch.zeros(8, 8, 1)
    m[:4] = 1.0
    assert silhouette_iou(m, m.clone()) == 1.0
    assert silhouette_iou(m, 1.0 - m) == 0.0
    half = torch.zeros(8, 8, 1)
    half[:2] = 1.0
    assert silhouette_iou(m, half) == pytest.approx(0.5)
    assert silhouette_iou(torch.zeros(4, 4), torch.zeros(4, 4)) == 1.0


def test_to_srgb_reference_values() -> None:
    x = torch.tensor([0.0, 0.002, 0.18, 1.0, 2.0])
    y = to_srgb(x)
    expect = [0.0, 0.002 * 12.92, 1.055 * 0.18 ** (1 / 2.4) - 0.055, 1.0, 1.0]
    assert y.tolist() == pytest.approx(expect, abs=1e-6)


def _uv_sphere(radius: float, rings: int = 48, segments: int = 96) -> Mesh:
    theta = torch.linspace(0, math.pi, rings + 1, dtype=torch.float64)
    phi = torch.linspace(0, 2 * math.pi, segments + 1, dtype=torch.float64)[:-1]
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    pos = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    faces = []
    for r in range(rings):
        for s in range(segments):
            a, b = r * segments + s, r * segments + (s + 1) % segments
            c, d = a + segments, b + segments
            faces += [[a, c, b], [b, c, d]]
    return Mesh(v_pos=(pos * radius).float(), t_pos_idx=torch.tensor(faces, dtype=torch.int64))


def test_chamfer_self_is_zero_and_scaled_is_known() -> None:
    s1 = _uv_sphere(1.0)
    assert chamfer_distance(s1, s1, samples=20_000, seed=1) == 0.0
    s2 = _uv_sphere(1.2)
    # Concentric spheres of radii 1 and 1.2: every point is 0.2 from the other, each way.
    d = chamfer_distance(s1, s2, samples=20_000, seed=1)
    assert d == pytest.approx(0.4, abs=0.01)
