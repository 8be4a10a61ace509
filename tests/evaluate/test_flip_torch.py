"""The torch LDR-FLIP held to flip-evaluator (the reference implementation's package)."""

from __future__ import annotations

import pytest
import torch

from difflod.assets import make
from difflod.evaluate.evaluate import normalize_to, render_views
from difflod.evaluate.flip_torch import flip_error_maps
from difflod.evaluate.metrics import flip_error_map
from difflod.scene.views import fixed_views

# Both sides compute in float32, in other orders. In flat regions the edge and
# point filters sum ~19 weights of size ~1 to almost 0 (float32 cancellation,
# ~1e-6), and the feature term takes a square root of that (~1e-3), which the
# final colour^(1 - feature) carries into the map: a few pixels differ by up to
# 8.3e-4 (measured worst over the 36 maps below); the means, where such pixels
# are rare and of both signs, by at most 8.7e-6. Bounds: 2x the measurements.
PIXEL_TOL = 2e-3
MEAN_TOL = 2e-5


def _pairs(name: str) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """A reference render of an asset (3 views, 96²) against: a coarser version
    of the asset, itself with noise, itself shifted by (2, -1) pixels."""
    views = fixed_views(3, 7)
    ref = make(name, triangles=3000, seed=0, texture_res=64)
    cand = make(name, triangles=300, seed=0, texture_res=32)
    r = render_views(normalize_to(ref, ref), views, 96, backend="cpu")[0]
    c = render_views(normalize_to(cand, ref), views, 96, backend="cpu")[0]
    g = torch.Generator().manual_seed(1)
    noisy = (r + 0.03 * torch.randn(r.shape, generator=g)).clamp(0, 1)
    shifted = torch.roll(r, shifts=(2, -1), dims=(1, 2))
    return [("coarser", r, c), ("noise", r, noisy), ("shifted", r, shifted)]


@pytest.mark.parametrize("name", ["spiky", "knot", "multi_material", "shrub"])
def test_maps_and_means_match_flip_evaluator_on_renders(name: str) -> None:
    for label, ref, test in _pairs(name):
        got = flip_error_maps(ref, test)
        assert got.shape == ref.shape[:3] and got.dtype == torch.float32
        for i in range(len(ref)):
            want, mean = flip_error_map(ref[i], test[i])
            assert float(want.mean()) > 0.05, "a pair that differs visibly"
            assert float((got[i] - want).abs().max()) < PIXEL_TOL, (label, i)
            assert float(got[i].double().mean()) == pytest.approx(mean, abs=MEAN_TOL), (label, i)


def test_ppd_and_odd_sizes_match_flip_evaluator() -> None:
    # a non-square picture, smaller than the filters' widths, and another ppd
    # (wider filters: radius 14 and 13 at 100 ppd instead of 10 and 9)
    g = torch.Generator().manual_seed(2)
    a = torch.rand(17, 30, 3, generator=g)
    b = (a + 0.2 * torch.rand(17, 30, 3, generator=g)).clamp(0, 1)
    for ppd in (67.0, 100.0):
        want, mean = flip_error_map(a, b, ppd=ppd)
        got = flip_error_maps(a, b, ppd=ppd)
        assert got.shape == (17, 30)
        assert float((got - want).abs().max()) < PIXEL_TOL
        assert float(got.double().mean()) == pytest.approx(mean, abs=MEAN_TOL)


def test_identical_pictures_score_zero_and_chunks_do_not_matter() -> None:
    r, c = _pairs("sphere")[0][1:]
    assert float(flip_error_maps(r, r.clone()).abs().max()) == 0.0
    whole = flip_error_maps(r, c, chunk=3)
    assert torch.allclose(flip_error_maps(r, c, chunk=1), whole, atol=1e-6)
    assert torch.allclose(flip_error_maps(r[1], c[1]), whole[1], atol=1e-6)


def test_bad_arguments_name_the_problem() -> None:
    a = torch.zeros(2, 8, 8, 3)
    with pytest.raises(ValueError, match=r"both be \[B,H,W,3\]"):
        flip_error_maps(a, torch.zeros(2, 8, 9, 3))
    with pytest.raises(ValueError, match="ppd must be > 0"):
        flip_error_maps(a, a, ppd=0.0)
