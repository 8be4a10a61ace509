"""Texels no surface point or view determines: filled from their neighbours
(difflod.base.texel_fill), in the bake and in the exported result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflod.base.bake import chart_mask, rasterize_uv
from difflod.base.texel_fill import fill_from_nearest
from difflod.config import TrainConfig
from difflod.mesh import Material, Mesh
from difflod.optimize.trainable import Trainable
from difflod.render.texture import texture


def _nearest_sources(valid: np.ndarray) -> dict[tuple[int, int], set[tuple[int, int]]]:
    """Brute force: for every invalid texel, the valid texels at the least distance."""
    vy, vx = np.nonzero(valid)
    out = {}
    for y, x in zip(*np.nonzero(~valid)):
        d2 = (vy - y) ** 2 + (vx - x) ** 2
        best = d2 == d2.min()
        out[(int(y), int(x))] = set(zip(vy[best].tolist(), vx[best].tolist()))
    return out


def _source_of(img: np.ndarray, value: np.ndarray) -> set[tuple[int, int]]:
    hits = np.nonzero(np.all(img == value, axis=-1))
    return set(zip(hits[0].tolist(), hits[1].tolist()))


def test_fill_from_nearest_copies_a_nearest_valid_texel() -> None:
    rng = np.random.default_rng(3)
    valid = rng.random((20, 24)) < 0.08
    img = rng.random((20, 24, 2))  # every texel distinct: the source can be identified
    filled = fill_from_nearest(img, valid)
    assert np.array_equal(filled[valid], img[valid])
    for (y, x), nearest in _nearest_sources(valid).items():
        assert _source_of(img, filled[y, x]) & nearest, (y, x)
    as_tensor = fill_from_nearest(torch.from_numpy(img), valid)
    assert torch.equal(as_tensor, torch.from_numpy(filled))


def test_fill_from_nearest_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no valid texel"):
        fill_from_nearest(np.zeros((4, 4, 3)), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match=r"must be \[H,W,C\]"):
        fill_from_nearest(np.zeros((4, 5, 3)), np.ones((4, 4), bool))


def test_bake_fills_every_texel_outside_the_charts_from_its_nearest_chart_texel() -> None:
    from difflod.assets import make
    from difflod.base.baseline import baseline

    res = 48
    out = baseline(make("spiky", triangles=3000, texture_res=64), 120, texture_res=res)
    cov = rasterize_uv(out.v_tex.double().numpy(), out.t_tex_idx.numpy(), res).tri >= 0
    assert 0.2 < cov.mean() < 0.95  # there are gutters to fill
    nearest = _nearest_sources(cov)
    for name in ("kd", "ks"):
        img = getattr(out.materials[0], name).numpy()
        for (y, x), sources in nearest.items():
            assert _source_of(np.where(cov[..., None], img, np.nan), img[y, x]) & sources, \
                (name, y, x)


def _two_chart_mesh(res: int) -> Mesh:
    """Two quads, each its own UV chart: A in [.1,.4]^2, B in [.6,.9]^2 of the atlas."""
    pos = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                        [2, 0, 0], [3, 0, 0], [3, 1, 0], [2, 1, 0]], dtype=torch.float32)
    uv = torch.tensor([[.1, .1], [.4, .1], [.4, .4], [.1, .4],
                       [.6, .6], [.9, .6], [.9, .9], [.6, .9]])
    idx = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    gen = torch.Generator().manual_seed(1)
    mat = Material(kd=torch.rand((res, res, 3), generator=gen),
                   ks=torch.rand((res, res, 3), generator=gen) * 0.5 + 0.25)
    return Mesh(v_pos=pos, t_pos_idx=idx, v_tex=uv, t_tex_idx=idx.clone(),
                materials=(mat,)).validate()


def _train_chart_a(trainable: Trainable, steps: int = 5) -> None:
    """Adam steps on a loss that sees chart A only (bilinear lookups inside it)."""
    g = torch.linspace(0.15, 0.35, 9)
    uv = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1)[None]  # [1,9,9,2]
    opt = torch.optim.Adam(trainable.param_groups())
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(texture(trainable.textures[n].base, uv, filter_mode="linear",
                           backend="torch").sub(0.9).square().mean() for n in ("kd", "ks"))
        loss.backward()
        opt.step()
        trainable.clamp_()


@pytest.mark.parametrize("init", ["base", "random"])
def test_export_fills_what_no_view_saw(init: str) -> None:
    res = 32
    base = _two_chart_mesh(res)
    config = TrainConfig(texture_res=(res, res), init_textures=init, learning_rate=0.05)
    trainable = Trainable(base, base, config, torch.Generator().manual_seed(0))
    start = {n: trainable.textures[n].base.detach().clone() for n in ("kd", "ks")}
    _train_chart_a(trainable)
    chart = chart_mask(base.v_tex, base.t_tex_idx, (res, res))
    a, b = chart.copy(), chart.copy()
    a[res // 2:], b[:res // 2] = False, False
    exported = trainable.export_mesh().materials[0]
    for n in ("kd", "ks"):
        trained = trainable.textures[n].base.detach()
        got = getattr(exported, n)
        changed = (trained != start[n]).any(-1).numpy()
        assert changed[a].mean() > 0.5 and not changed[b].any()  # chart B: no view saw it
        if init == "base":  # unseen texels keep the bake's values
            assert torch.equal(got[torch.from_numpy(b)], start[n][torch.from_numpy(b)])
            valid = chart
        else:  # unseen noise is replaced by what the views saw
            valid = chart & changed
        assert torch.equal(got[torch.from_numpy(valid)], trained[torch.from_numpy(valid)])
        for (y, x), sources in _nearest_sources(valid).items():
            assert _source_of(np.where(valid[..., None], got.numpy(), np.nan),
                              got[y, x].numpy()) & sources, (n, y, x)


def test_export_of_a_wrapping_layout_fills_nothing_in_the_charts_it_cannot_know() -> None:
    res = 16
    base = _two_chart_mesh(res)
    base = base.replace(v_tex=base.v_tex * 2.0 - 0.5)  # UVs outside [0,1]: tiled, no gutters
    assert chart_mask(base.v_tex, base.t_tex_idx, (res, res)) is None
    trainable = Trainable(base, base, TrainConfig(texture_res=(res, res), init_textures="base"),
                          torch.Generator().manual_seed(0))
    _train_chart_a(trainable, steps=2)
    for n in ("kd", "ks"):
        assert torch.equal(getattr(trainable.export_mesh().materials[0], n),
                           trainable.textures[n].base.detach())
