"""Tests for difflod.scene.views: training/eval view sampling and backgrounds."""

from __future__ import annotations

import math

import pytest
import torch

from difflod.scene import camera
from difflod.scene import views as V


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sample_views_shapes_and_geometry():
    v = V.sample_views(8, _gen(1))
    assert len(v) == 8 and v.mvp.shape == (8, 4, 4) and v.mvp.dtype == torch.float32
    assert v.campos.shape == (8, 3) and v.lightpos.shape == (8, 3)
    # Camera at distance 3.5 from the (jittered by <= 0.25 per axis) model origin.
    d = v.campos.double().norm(dim=1)
    jitter = 0.25 * math.sqrt(3)
    assert bool(((d > 3.5 - jitter) & (d < 3.5 + jitter)).all())
    # Light at radius 3.5 and in the camera's hemisphere.
    torch.testing.assert_close(v.lightpos.norm(dim=1), torch.full((8,), 3.5), rtol=1e-5, atol=0)
    assert bool((torch.sum(v.lightpos * v.campos, dim=1) > 0).all())
    # The eye projects to w = 0: mvp @ [campos, 1] has w == 0 (camera centre).
    h = torch.cat([v.campos, torch.ones(8, 1)], 1).double()
    w = torch.einsum("bij,bj->bi", v.mvp.double(), h)[:, 3]
    torch.testing.assert_close(w, torch.zeros(8, dtype=torch.float64), atol=1e-4, rtol=0)


def test_sample_views_projection_is_nvdiffmodelings():
    g = _gen(3)
    v = V.sample_views(1, g, translation=0.0)
    g = _gen(3)
    rot = camera.random_rotation(g, 0.0).double()
    mv = camera.translate(0, 0, -3.5).double() @ rot
    expected = camera.perspective(camera.DEFAULT_FOVY).double() @ mv
    torch.testing.assert_close(v.mvp[0].double(), expected, atol=1e-5, rtol=1e-5)


def test_zoomed_views_are_windows_of_the_same_views():
    """zoom > 1: the same cameras and lights; each view's NDC is the full view's,
    magnified by z in [1, zoom] about a centre that keeps the window inside the
    frame; zoom 1 draws nothing more (the stream without zoom)."""
    full, zoomed = V.sample_views(64, _gen(5)), V.sample_views(64, _gen(5), zoom=3.0)
    torch.testing.assert_close(zoomed.campos, full.campos)
    torch.testing.assert_close(zoomed.lightpos, full.lightpos)
    pts = torch.cat([torch.rand(50, 3, generator=_gen(6)) - 0.5, torch.ones(50, 1)], 1).double()
    ndc = [torch.einsum("bij,pj->bpi", v.mvp.double(), pts) for v in (full, zoomed)]
    ndc = [c[..., :2] / c[..., 3:] for c in ndc]
    # per view and axis: zoomed = z * full + offset, with one z for both axes
    one = torch.ones(50, dtype=torch.float64)
    fit = torch.stack([torch.stack([torch.linalg.lstsq(
        torch.stack([ndc[0][b, :, a], one], 1), ndc[1][b, :, a:a + 1]).solution[:, 0]
        for a in range(2)]) for b in range(64)])                      # [64, axis, (z, o)]
    scale, offset = fit[:, 0, 0], fit[:, :, 1]
    torch.testing.assert_close(fit[:, 1, 0], scale)
    torch.testing.assert_close(ndc[1], scale[:, None, None] * ndc[0] + offset[:, None, :])
    assert bool((scale >= 1.0 - 1e-6).all() and (scale <= 3.0 + 1e-6).all())
    assert scale.max() > 2.5 and scale.min() < 1.2  # log-uniform over the range
    assert bool((offset.abs() <= scale[:, None] - 1.0 + 1e-6).all())
    torch.testing.assert_close(V.sample_views(4, _gen(5), zoom=1.0).mvp, full.mvp[:4])
    with pytest.raises(ValueError, match="zoom"):
        V.sample_views(1, _gen(0), zoom=0.5)


def test_light_direction_is_cosine_distributed():
    v = V.sample_views(3000, _gen(2), translation=0.0)
    cos = torch.sum(v.lightpos * v.campos, 1) / (
        v.lightpos.norm(dim=1) * v.campos.norm(dim=1))
    # pdf cos/pi on the hemisphere: cos^2 is uniform on [0,1], E[cos] = 2/3.
    assert float(cos.mean()) == pytest.approx(2 / 3, abs=0.02)
    assert float((cos * cos).mean()) == pytest.approx(0.5, abs=0.02)


def test_reproducible_and_eval_disjoint():
    a, b = V.sample_views(4, _gen(5)), V.sample_views(4, _gen(5))
    torch.testing.assert_close(a.mvp, b.mvp, rtol=0, atol=0)
    e1, e2 = V.fixed_views(4, 5), V.fixed_views(4, 5)
    torch.testing.assert_close(e1.mvp, e2.mvp, rtol=0, atol=0)
    assert not torch.allclose(e1.mvp, a.mvp)
    assert not torch.allclose(V.fixed_views(4, 6).mvp, e1.mvp)
    # Eval views never equal training views from small integer seeds.
    train = torch.cat([V.sample_views(4, _gen(s)).mvp for s in range(20)])
    diff = (train[:, None] - e1.mvp[None]).abs().flatten(2).max(-1).values
    assert float(diff.min()) > 1e-3


def test_indexing_and_to():
    v = V.sample_views(5, _gen(0), light_power=3.0)
    one = v[2]
    assert len(one) == 1 and one.light_power == 3.0
    torch.testing.assert_close(one.mvp[0], v.mvp[2])
    assert len(v[1:4]) == 3 and len(v[-1]) == 1
    torch.testing.assert_close(v[-1].campos[0], v.campos[4])
    with pytest.raises(IndexError):
        v[5]
    assert v.to("meta").mvp.device.type == "meta"
    with pytest.raises(ValueError, match="campos"):
        V.Views(mvp=torch.zeros(2, 4, 4), campos=torch.zeros(3, 3), lightpos=torch.zeros(2, 3))


def test_views_from_eye():
    v = V.views_from_eye([0.0, 0.0, 3.5], [0.0, 1.0, 0.0])
    torch.testing.assert_close(v.campos[0], torch.tensor([0.0, 0.0, 3.5]))
    torch.testing.assert_close(v.lightpos, v.campos)
    # The origin projects to the image centre.
    c = v.mvp[0].double() @ torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    assert abs(float(c[0])) < 1e-6 and abs(float(c[1])) < 1e-6 and float(c[3]) == pytest.approx(3.5)


def test_backgrounds():
    assert float(V.background("black", 2, 4, 4).abs().max()) == 0.0
    assert float(V.background("white", 1, 4, 4).min()) == 1.0
    ch = V.background("checker", 1, 32, 32)
    assert ch.shape == (1, 32, 32, 3)
    assert float(ch[0, 0, 0, 0]) == pytest.approx(0.66)
    assert float(ch[0, 0, 2, 0]) == pytest.approx(0.33)
    assert float(ch[0, 2, 2, 0]) == pytest.approx(0.66)
    assert float(ch[0, 1, 1, 0]) == pytest.approx(0.66)  # 2x2-pixel tiles at 32 px
    r1 = V.background("random", 2, 8, 8, _gen(1))
    r2 = V.background("random", 2, 8, 8, _gen(1))
    torch.testing.assert_close(r1, r2, rtol=0, atol=0)
    assert float(r1.min()) >= 0.0 and float(r1.max()) < 1.0 and float(r1.std()) > 0.2
    g = _gen(1)
    assert not torch.equal(V.background("random", 1, 8, 8, g), V.background("random", 1, 8, 8, g))
    with pytest.raises(ValueError, match="checker"):
        V.background("grey", 1, 4, 4)
    with pytest.raises(ValueError, match="generator"):
        V.background("random", 1, 4, 4)


def test_solid_background_is_one_seeded_colour_per_image() -> None:
    s1 = V.background("solid", 64, 5, 7, _gen(2))
    torch.testing.assert_close(s1, V.background("solid", 64, 5, 7, _gen(2)), rtol=0, atol=0)
    assert s1.shape == (64, 5, 7, 3) and s1.dtype == torch.float32
    # every pixel of an image has the image's colour; the colours differ per image
    assert torch.equal(s1, s1[:, :1, :1].expand_as(s1))
    colours = s1[:, 0, 0]
    assert float(colours.min()) >= 0.0 and float(colours.max()) < 1.0
    assert 0.35 < float(colours.mean()) < 0.65 and float(colours.std()) > 0.2
    with pytest.raises(ValueError, match="generator"):
        V.background("solid", 1, 4, 4)


@pytest.mark.parametrize("kind", ["black", "white", "checker", "solid", "random"])
def test_background_drawn_into_a_buffer(kind: str) -> None:
    """out= (a recorded step's input buffer) gives the same values as a fresh draw,
    as a view of the buffer; a uniform kind stores one colour per image and is a
    broadcast view (no image-sized memory); a buffer of the wrong shape is refused."""
    fresh = V.background(kind, 3, 6, 5, _gen(4))
    buf = V.background_buffer(kind, 3, 6, 5)
    got = V.background(kind, 3, 6, 5, _gen(4), out=buf)
    torch.testing.assert_close(got, fresh, rtol=0, atol=0)
    assert got.data_ptr() == buf.data_ptr() and got.shape == (3, 6, 5, 3)
    uniform = kind in V.UNIFORM_BACKGROUNDS
    assert buf.shape == ((3, 1, 1, 3) if uniform else (3, 6, 5, 3))
    assert (fresh.stride(1) == 0 and fresh.stride(2) == 0) == uniform
    with pytest.raises(ValueError, match="buffer must be float32"):
        V.background(kind, 3, 6, 5, _gen(4), out=torch.empty(3, 6, 5, 1))


def test_random_background_on_gpu_is_seeded(cuda: torch.device) -> None:
    background = V.background
    a = background("random", 2, 8, 9, torch.Generator().manual_seed(3), device=cuda)
    b = background("random", 2, 8, 9, torch.Generator().manual_seed(3), device=cuda)
    c = background("random", 2, 8, 9, torch.Generator().manual_seed(4), device=cuda)
    assert a.device.type == "cuda" and a.shape == (2, 8, 9, 3) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) < 1.0 and 0.4 < float(a.mean()) < 0.6
    buf = V.background_buffer("random", 2, 8, 9, device=cuda)
    d = background("random", 2, 8, 9, torch.Generator().manual_seed(3), device=cuda, out=buf)
    assert torch.equal(d, a) and d.data_ptr() == buf.data_ptr()  # drawn in place, same noise
