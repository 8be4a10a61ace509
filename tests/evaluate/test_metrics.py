"""Tests for difflod.evaluate.metrics: reference values and limiting cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from difflod.evaluate import metrics
from difflod.evaluate.flip_torch import flip_error_maps
from difflod.evaluate.metrics import (
    ChamferReference,
    chamfer_distance,
    flip,
    flip_error_map,
    flip_per_image,
    psnr,
    psnr_per_image,
    silhouette_iou,
    silhouette_iou_per_image,
    ssim,
    ssim_per_image,
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


def _ssim_plain_conv2d(a: torch.Tensor, b: torch.Tensor) -> float:
    """The former implementation: a 2-D 11x11 Gaussian window applied with
    torch's float64 grouped conv2d (6.8 s per 512^2 image on two cores)."""
    x, y = a.double().permute(2, 0, 1)[None], b.double().permute(2, 0, 1)[None]
    t = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-t * t / (2 * 1.5 ** 2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(z, w, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def test_ssim_separable_equals_the_plain_2d_window() -> None:
    # float64 throughout: the two summation orders differ by rounding alone (~1e-16
    # per value); 1e-12 leaves room for the mean over ~5000 values
    for seed in range(3):
        a, b = _image(10 + seed, 61, 53), _image(20 + seed, 61, 53)
        assert ssim(a, b) == pytest.approx(_ssim_plain_conv2d(a, b), abs=1e-12)


def test_ssim_per_image_is_each_images_ssim() -> None:
    a = torch.stack([_image(6), _image(7), _image(8)])
    b = torch.stack([_image(9), _image(7), _image(11)])
    per = ssim_per_image(a, b)
    assert per.shape == (3,) and per[1] == pytest.approx(1.0, abs=1e-12)
    for i in range(3):
        assert float(per[i]) == pytest.approx(_ssim_plain_conv2d(a[i], b[i]), abs=1e-12)


def _flip_of_uniform_colors(c1: tuple[float, ...], c2: tuple[float, ...]) -> float:
    """LDR-FLIP of two uniform sRGB images, from the FLIP paper (Andersson et al. 2020).

    On uniform images the spatial filters change nothing and the feature (edge and
    point) error is 0, so FLIP is the colour error alone: the HyAB distance of the
    Hunt-adjusted L*a*b* colours (a*, b* scaled by 0.01 L*; white point: linear RGB
    (1,1,1)), raised to q_c = 0.7 and remapped with the green-blue distance as
    c_max, p_c = 0.4 and p_t = 0.95.
    """
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])

    def hunt_lab(linear: np.ndarray) -> np.ndarray:
        t = (to_xyz @ linear) / (to_xyz @ np.ones(3))
        f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
        lum = 116 * f[1] - 16
        return np.array([lum, 0.01 * lum * 500 * (f[0] - f[1]), 0.01 * lum * 200 * (f[1] - f[2])])

    def hyab(p: np.ndarray, q: np.ndarray) -> float:
        return abs(p[0] - q[0]) + math.hypot(p[1] - q[1], p[2] - q[2])

    def linear(c: tuple[float, ...]) -> np.ndarray:
        x = np.asarray(c, dtype=np.float64)
        return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)

    qc, pc, pt = 0.7, 0.4, 0.95
    cmax = hyab(hunt_lab(np.array([0.0, 1, 0])), hunt_lab(np.array([0.0, 0, 1]))) ** qc
    e = hyab(hunt_lab(linear(c1)), hunt_lab(linear(c2))) ** qc
    if e < pc * cmax:
        return pt * e / (pc * cmax)
    return pt + (e - pc * cmax) / (cmax - pc * cmax) * (1 - pt)


@pytest.mark.parametrize("c1, c2", [((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
                                    ((0.2, 0.4, 0.6), (0.25, 0.4, 0.6)),
                                    ((0.5, 0.5, 0.5), (0.5, 0.6, 0.5)),
                                    ((0.9, 0.1, 0.1), (0.1, 0.1, 0.9))])
def test_flip_of_uniform_images_matches_the_paper(c1: tuple, c2: tuple) -> None:
    a = torch.tensor(c1).expand(24, 20, 3).contiguous()
    b = torch.tensor(c2).expand(24, 20, 3).contiguous()
    err, mean = flip_error_map(a, b)
    # flip-evaluator works in float32 with its own rounding of the XYZ matrix:
    # measured at most 6e-5 from this float64 computation, on values 0.08 to 0.97
    expect = _flip_of_uniform_colors(c1, c2)
    assert mean == pytest.approx(expect, abs=2e-4)
    assert float(err.min()) == pytest.approx(expect, abs=2e-4)
    assert float(err.max()) == pytest.approx(expect, abs=2e-4)
    # the torch FLIP the evaluation uses: the same float32 pipeline and bound
    ours = flip_error_maps(a, b)
    assert float(ours.min()) == pytest.approx(expect, abs=2e-4)
    assert float(ours.max()) == pytest.approx(expect, abs=2e-4)


def test_flip_identical_is_zero_and_the_map_is_where_the_images_differ() -> None:
    a = _image(10)
    assert flip(a, a.clone()) == pytest.approx(0.0, abs=1e-7)
    # a bright block in a grey image: the error sits on the block, rows and columns
    # as in the images, and nothing 15 pixels away from it
    grey = torch.full((48, 40, 3), 0.5)
    block = grey.clone()
    block[4:10, 28:36] = 0.9
    err, mean = flip_error_map(grey, block)
    assert err.shape == (48, 40)
    assert float(err[4:10, 28:36].min()) > 0.5
    assert float(err[25:].max()) == 0.0 and float(err[:, :13].max()) == 0.0
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


def test_chamfer_reference_matches_brute_force_and_is_reusable() -> None:
    s1, s2, s3 = _uv_sphere(1.0), _uv_sphere(1.2), _uv_sphere(0.7)
    ref = ChamferReference(s1, samples=800, seed=2)
    for other in (s2, s3, s1):
        # brute force: all pairwise distances of the same seeded samples
        pa = torch.from_numpy(ref.points).double()
        rng = np.random.default_rng(2)
        from difflod.geometry.sampling import sample_surface

        pb = torch.from_numpy(sample_surface(other.v_pos.numpy(), other.t_pos_idx.numpy(),
                                             800, rng)[0]).double()
        d = torch.cdist(pa, pb, compute_mode="donot_use_mm_for_euclid_dist")
        expect = float(d.min(1).values.mean() + d.min(0).values.mean())
        # the k-d tree is exact; float64 sums of 800 values
        assert ref.distance(other) == pytest.approx(expect, abs=1e-12)
        assert chamfer_distance(s1, other, samples=800, seed=2) == ref.distance(other)


def _batch(seed: int, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.stack([_image(seed + i) for i in range(n)])
    b = torch.stack([_image(seed + 10 + i) for i in range(n)])
    b[1] = a[1]  # one identical pair: PSNR inf, SSIM 1, FLIP 0
    return a, b


def test_per_image_psnr_and_iou_equal_the_single_image_functions() -> None:
    a, b = _batch(3)
    per = psnr_per_image(a, b)
    assert per.dtype == torch.float64 and per.shape == (3,)
    expect = [psnr(a[i], b[i]) for i in range(3)]
    assert per[1].item() == math.inf == expect[1]
    # the same float64 sum of squares, reduced in another order
    assert per.tolist() == pytest.approx(expect, rel=1e-12)
    alpha_a, alpha_b = (a[..., :1] > 0.5).float(), (b[..., :1] > 0.4).float()
    alpha_b[2] = 0.0
    alpha_a[2] = 0.0  # both masks empty: IoU 1
    iou = silhouette_iou_per_image(alpha_a, alpha_b)
    assert iou.tolist() == [silhouette_iou(alpha_a[i], alpha_b[i]) for i in range(3)]
    assert iou[2].item() == 1.0 and 0.0 < iou[0].item() < 1.0
    with pytest.raises(ValueError, match="same shape"):
        silhouette_iou_per_image(alpha_a, alpha_b[:2])


def test_ssim_on_a_gpu_path_equals_the_scipy_path() -> None:
    # pictures on a GPU are scored by torch convolutions (metrics._ssim_torch);
    # run on CPU tensors here, they must give scipy's numbers: both float64,
    # the same separable window, so only the summation order differs
    a, b = _batch(5)
    taps = metrics._gaussian_1d(11, 1.5)
    ours = metrics._ssim_torch(a, b, taps, 0.01 ** 2, 0.03 ** 2)
    expect = ssim_per_image(a, b)
    assert ours.tolist() == pytest.approx(expect.tolist(), abs=1e-12)
    assert ours[1].item() == pytest.approx(1.0, abs=1e-12) and ours[0].item() < 0.9


def test_flip_per_image_matches_flip_evaluator_and_keeps_the_first_maps() -> None:
    a, b = _batch(7)
    means, maps = flip_per_image(a, b, keep=2)
    assert means.shape == (3,) and maps.shape == (2, *a.shape[1:3])
    assert means[1].item() == 0.0
    for i in range(3):
        err, mean = flip_error_map(a[i], b[i])
        # bounds of tests/evaluate/test_flip_torch.py (float32 on both sides)
        assert means[i].item() == pytest.approx(mean, abs=2e-5)
        if i < 2:
            assert float((maps[i] - err).abs().max()) < 2e-3
    assert flip_per_image(a, b)[1].shape == (0, *a.shape[1:3])


def test_chamfer_search_on_a_gpu_path_equals_the_kd_tree() -> None:
    # GPU meshes search their neighbours exhaustively with torch
    # (metrics._mean_nearest), in blocks; on CPU tensors, with blocks of 50
    # rows, it must find the k-d tree's very distances (float64 sums of 800)
    s1, s2 = _uv_sphere(1.0), _uv_sphere(1.2)
    ref = ChamferReference(s1, samples=800, seed=2)
    pa = torch.from_numpy(ref.points)
    pb = torch.from_numpy(metrics._surface_points(s2, 800, 2))
    ours = metrics._mean_nearest(pa, pb, pairs=50 * 800) + metrics._mean_nearest(
        pb, pa, pairs=50 * 800)
    assert ours == pytest.approx(ref.distance(s2), abs=1e-12)
    assert metrics._mean_nearest(pa, pa, pairs=7 * 800) == 0.0  # exact differences


def test_metrics_on_the_gpu_equal_the_cpu_ones(cuda: torch.device) -> None:
    a, b = _batch(9, n=5)
    ga, gb = a.to(cuda), b.to(cuda)
    for fn in (psnr_per_image, ssim_per_image):
        got = fn(ga, gb)
        assert got.device.type == "cuda"
        assert got.cpu().tolist() == pytest.approx(fn(a, b).tolist(), abs=1e-10)
    means, maps = flip_per_image(ga, gb, keep=2)
    cpu_means, cpu_maps = flip_per_image(a, b, keep=2)
    assert means.device.type == "cuda"
    # the same float32 pipeline; GPU convolutions sum in other orders
    assert means.cpu().tolist() == pytest.approx(cpu_means.tolist(), abs=2e-5)
    assert float((maps.cpu() - cpu_maps).abs().max()) < 2e-3
    s1, s2 = _uv_sphere(1.0), _uv_sphere(1.2)
    assert ChamferReference(s1.to(cuda), samples=2000, seed=2).distance(s2.to(cuda)) == \
        pytest.approx(ChamferReference(s1, samples=2000, seed=2).distance(s2), abs=1e-12)


def _disc(res: int = 32, radius: float = 9.5) -> torch.Tensor:
    """`[1,res,res,1]` coverage of a disc centred in the picture."""
    yy, xx = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
    inside = (yy - res / 2 + 0.5) ** 2 + (xx - res / 2 + 0.5) ** 2 <= radius ** 2
    return inside.float()[None, :, :, None]


def test_outline_share_splits_the_error_at_the_silhouette() -> None:
    """The band is every pixel within 2 of a covered/empty change, checked here
    with scipy's binary morphology; error only in the band scores 1, only
    outside 0, and a mix its exact share."""
    from scipy.ndimage import binary_dilation, binary_erosion

    alpha = _disc()
    mask = alpha[0, :, :, 0].numpy() > 0.5
    square = np.ones((5, 5), dtype=bool)
    band = torch.from_numpy(binary_dilation(mask, square)
                            & ~binary_erosion(mask, square, border_value=1))
    a = torch.zeros(1, 32, 32, 3)
    # every band pixel off by 0.1 in one channel, every other pixel by 0.2
    on_band = a.clone()
    on_band[0, band, 0] = 0.1
    off_band = a.clone()
    off_band[0, ~band, 1] = 0.2
    share = metrics.outline_share_per_image
    assert share(a, on_band, alpha).tolist() == [1.0]
    assert share(a, off_band, alpha).tolist() == [0.0]
    both = on_band + off_band
    want = band.sum() * 0.01 / (band.sum() * 0.01 + (~band).sum() * 0.04)
    assert float(share(a, both, alpha)[0]) == pytest.approx(float(want), rel=1e-6)
    # no error: 0; a batch scores each view; the [B,H,W] alpha form is the same
    batch = torch.cat([both, a])
    got = share(torch.cat([a, a]), batch, torch.cat([alpha, alpha])[..., 0])
    assert got.dtype == torch.float64 and got.shape == (2,)
    assert got.tolist() == pytest.approx([float(want), 0.0], rel=1e-6)


def test_outline_share_band_width_and_bad_arguments() -> None:
    alpha = _disc()
    a = torch.zeros(1, 32, 32, 3)
    b = a.clone()
    b[0, 16, 28, 0] = 1.0      # 4 pixels past the disc's last covered one (column 24)
    share = metrics.outline_share_per_image
    assert share(a, b, alpha, width=2).tolist() == [0.0]
    assert share(a, b, alpha, width=4).tolist() == [1.0]
    with pytest.raises(ValueError, match="alpha_ref must be"):
        share(a, b, alpha[:, :16])
    with pytest.raises(ValueError, match="width must be"):
        share(a, b, alpha, width=0)
    with pytest.raises(ValueError, match="images must be"):
        share(a[0], b[0], alpha)
