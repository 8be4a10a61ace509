"""The recorded step's fixed number of shaded pixels (optimize.graphed's
pixel_capacity, render_mesh's `pixel_capacity`), on the CPU: the Trainer uses
a capacity wherever one is set, so its bookkeeping is tested here without a
GPU (tests/optimize/test_graphed.py records it on one)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from difflod.config import load_config
from difflod.optimize.graphed import CAPACITY_MARGIN, measure_pixel_capacity
from difflod.render.pipeline import clip_positions
from difflod.render.rasterize import rasterize
from difflod.scene.views import sample_views

BASE = {"ref_mesh": "asset:sphere?triangles=1500&texture_res=64",
        "base_mesh": "asset:sphere?triangles=200&texture_res=32",
        "iter": 6, "batch": 2, "train_res": 32, "texture_res": [32, 32], "save_interval": 0,
        "eval_views": 2, "eval_res": 32, "backend": "cpu", "device": "cpu",
        "log_interval": 1}
TOTAL = 2 * 32 * 32


def _covered(mesh, views) -> int:
    rast, _ = rasterize(clip_positions(mesh.v_pos, views.mvp), mesh.t_pos_idx, (32, 32))
    return int((rast[..., 3] > 0).sum())


def test_the_capacity_holds_the_batches_that_training_draws(tmp_path: Path, trainer_for) -> None:
    tr = trainer_for(load_config(None, BASE), tmp_path)
    cand = tr._candidate()
    cap = measure_pixel_capacity([(tr.reference, 1), (cand, 1)], tr.config, 32, 1)
    assert cap is not None and cap < TOTAL
    # batches drawn as training draws them (another generator than the measurement's)
    gen = torch.Generator().manual_seed(123)
    seen = [_covered(m, sample_views(2, gen)) for _ in range(20) for m in (tr.reference, cand)]
    assert max(seen) * 1.05 < cap
    assert cap <= max(seen) * CAPACITY_MARGIN * 1.3 + 256
    # magnified windows fill the frame: no capacity below every pixel
    zoomed = load_config(None, {**BASE, "train_zoom": 16})
    assert measure_pixel_capacity([(tr.reference, 1), (cand, 1)], zoomed, 32, 1) is None


def test_room_for_every_covered_pixel_trains_as_the_default_step(tmp_path: Path,
                                                                  trainer_for) -> None:
    cfg = load_config(None, BASE)
    plain = trainer_for(cfg, tmp_path / "a")
    slots = trainer_for(cfg, tmp_path / "b")
    slots.pixel_capacity = TOTAL - 1
    for _ in range(3):
        a, b = plain.step(), slots.step()
        assert not b.get("skipped")
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"])
    want, got = plain.trainable.state_dict(), slots.trainable.state_dict()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=k)


def test_a_step_past_the_capacity_is_undone_and_the_capacity_grows(tmp_path: Path,
                                                                    trainer_for) -> None:
    tr = trainer_for(load_config(None, BASE), tmp_path)
    tr.pixel_capacity = 10
    before = {k: v.clone() for k, v in tr.trainable.state_dict().items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = tr.step()
    assert rec.get("skipped") is True
    for k, v in tr.trainable.state_dict().items():
        assert torch.equal(v, before[k]), k
    msg = " ".join(str(w.message) for w in caught)
    assert "more than the 10 they shade" in msg and "recorded again" in msg
    assert tr.pixel_capacity is not None and tr.pixel_capacity > 10
    assert tr.captured is None
    rec = tr.step()
    assert not rec.get("skipped")
    assert any(not torch.equal(v, before[k]) for k, v in tr.trainable.state_dict().items())
