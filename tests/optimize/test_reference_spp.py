"""The reference's training renders at their own samples per pixel
(`reference_spp`): a detailed reference's outline is drawn from several samples
per pixel, the candidate's at `spp`, and the pixel slots of a recorded step
count both at the candidate's samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflod.base.baseline import baseline
from difflod.config import ConfigError, TrainConfig, load_config
from difflod.models import open_model
from difflod.optimize.graphed import measure_pixel_capacity, scale_count
from difflod.render.pipeline import render_mesh
from difflod.scene.views import fixed_views

REF = "asset:sphere?triangles=20000&texture_res=32"
RES = 32
SMALL = {"iter": 2, "batch": 2, "train_res": RES, "texture_res": [32, 32], "save_interval": 0,
         "backend": "cpu", "device": "cpu", "init_textures": "base", "log_interval": 1,
         "reference_spp": 2}


@pytest.fixture(scope="module")
def meshes() -> tuple:
    ref = open_model(REF)
    return ref, baseline(ref, 200, texture_res=32)


def test_reference_spp_automatic_or_given() -> None:
    assert TrainConfig().reference_spp is None
    assert TrainConfig().reference_spp_for(1) == 1      # null: as the candidate
    assert TrainConfig().reference_spp_for(3) == 3
    assert load_config(None, {"reference_spp": 1}).reference_spp_for(2) == 1
    assert load_config(None, {"reference_spp": 4}).reference_spp_for(1) == 4
    with pytest.raises(ConfigError, match=r"'reference_spp' must be in 1..64 or null \(as spp\)"):
        load_config(None, {"reference_spp": 0})


def test_the_reference_is_drawn_at_its_own_samples(meshes: tuple, tmp_path: Path,
                                                    trainer_on) -> None:
    tr = trainer_on(meshes, load_config(None, SMALL), tmp_path / "two")
    assert (tr.config.spp, tr.config.reference_spp) == (1, 2)
    auto = trainer_on(meshes, load_config(None, {**SMALL, "reference_spp": None, "spp": 3}),
                      tmp_path / "auto")
    assert (auto.config.spp, auto.config.reference_spp) == (3, 3)   # resolved once

    views = fixed_views(2, 0)
    bg = torch.zeros(2, RES, RES, 3)
    opt, ref, covered = tr.render_pair(tr._candidate(), views, RES, (1, 2), bg, None)
    assert covered is None
    with torch.no_grad():
        want_ref = render_mesh(tr.reference, views, (RES, RES), spp=2, background=bg).color
        want_opt = render_mesh(tr._candidate(), views, (RES, RES), spp=1, background=bg,
                               mips=tr.trainable.mips()).color
    torch.testing.assert_close(ref, want_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opt.detach(), want_opt, rtol=1e-5, atol=1e-6)
    # why: the fine sphere's outline drawn from 4 samples per pixel is nearer to
    # one drawn from 64 than the antialiased single sample is (the antialiasing
    # misses most of a fine outline's crossings)
    with torch.no_grad():
        one = render_mesh(tr.reference, views, (RES, RES), spp=1, background=bg).color
        fine = render_mesh(tr.reference, views, (RES, RES), spp=8, background=bg).color
    err_one = float((one - fine).abs().sum())
    err_two = float((want_ref - fine).abs().sum())
    assert err_two < 0.6 * err_one, (err_two, err_one)


def test_pixel_slots_count_the_reference_at_the_candidates_samples(meshes: tuple, tmp_path: Path,
                                                                   trainer_on) -> None:
    assert scale_count(None, (4, 1)) is None
    assert scale_count(10, (1, 4)) == 3 and scale_count(10, (4, 1)) == 40
    assert int(scale_count(torch.tensor(9), (1, 4))) == 3
    tr = trainer_on(meshes, load_config(None, SMALL), tmp_path / "a")
    cand = tr._candidate()
    at_one = measure_pixel_capacity([(tr.reference, 1), (cand, 1)], tr.config, RES, 1)
    at_two = measure_pixel_capacity([(tr.reference, 2), (cand, 1)], tr.config, RES, 1)
    # the same outline counted from 4 samples a pixel, scaled back: within a few %
    assert at_one is not None and at_two is not None
    assert abs(at_two - at_one) <= 0.05 * at_one, (at_one, at_two)

    # slots for every covered pixel: the step is the one without slots
    plain = trainer_on(meshes, load_config(None, SMALL), tmp_path / "b")
    slots = trainer_on(meshes, load_config(None, SMALL), tmp_path / "c")
    slots.pixel_capacity = 2 * RES * RES - 1
    for _ in range(2):
        a, b = plain.step(), slots.step()
        assert not b.get("skipped")
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"])
    # the covered count a recorded step reads back is the larger of the two
    # renders' first layers, the reference's scaled to the candidate's samples
    from difflod.render.pipeline import clip_positions
    from difflod.render.rasterize import rasterize

    views = fixed_views(2, 0)
    counts = []
    for mesh, n in ((tr.reference, 2), (cand, 1)):
        rast, _ = rasterize(clip_positions(mesh.v_pos, views.mvp), mesh.t_pos_idx,
                            (RES * n, RES * n))
        counts.append(int((rast[..., 3] > 0).sum()))
    tr.pixel_capacity = at_two
    _, _, covered = tr.render_pair(cand, views, RES, (1, 2), torch.zeros(2, RES, RES, 3),
                                   None)
    assert covered is not None
    assert int(covered) == max(-(-counts[0] // 4), counts[1]) < at_two, (covered, counts)
