"""Learning-rate and Laplacian-weight schedules match nvdiffmodeling's formulas."""

from __future__ import annotations

import math

import pytest

from difflod.optimize.schedule import AUTO_FINAL_FACTOR, LaplacianWeight, lr_decay_rate, lr_factor


def test_lr_factor() -> None:
    assert lr_factor(0) == 1.0
    assert lr_factor(5000) == pytest.approx(0.1)
    assert lr_factor(10000, 0.0001) == pytest.approx(0.1)


@pytest.mark.parametrize("iterations", [1, 200, 2000])
def test_automatic_decay_reaches_its_final_factor_at_the_last_iteration(iterations: int) -> None:
    assert lr_decay_rate(0.0003, iterations) == 0.0003  # a set rate is kept
    rate = lr_decay_rate(None, iterations)
    assert lr_factor(iterations, rate) == pytest.approx(AUTO_FINAL_FACTOR)
    assert lr_factor(iterations / 2, rate) == pytest.approx(AUTO_FINAL_FACTOR ** 0.5)


def test_auto_laplacian_weight_and_decay() -> None:
    w = LaplacianWeight(None)
    first = w.update(0, 0.5)
    assert first == pytest.approx(0.25 * 0.1 / 0.5)
    # then decays towards 2 % of the first value, never below
    value = first
    for it in range(1, 2001):
        value = w.update(it, 123.0)   # later losses do not change the weight
    expected = first
    for it in range(1, 2001):
        expected = (expected - 0.02 * first) * 10 ** (-it * 1e-6) + 0.02 * first
    assert value == pytest.approx(expected, rel=1e-9)
    assert 0.02 * first < value < first


def test_fixed_laplacian_weight_and_state_round_trip() -> None:
    w = LaplacianWeight(1000.0)
    assert w.update(0, 7.0) == 1000.0
    w.update(1, 7.0)
    restored = LaplacianWeight.from_state(w.state())
    assert restored.update(2, 7.0) == w.update(2, 7.0)
    assert math.isfinite(w.value)


def test_the_trainer_decays_to_the_final_factor_with_lr_decay_null(tmp_path, trainer_for) -> None:
    from difflod.config import load_config

    cfg = load_config(None, {"ref_mesh": "asset:sphere?triangles=400&texture_res=16",
                             "base_mesh": "asset:sphere?triangles=100&texture_res=16",
                             "iter": 4, "batch": 1, "train_res": 16, "texture_res": [16, 16],
                             "learning_rate": [0.002, 0.01], "lr_decay": None,
                             "save_interval": 0, "backend": "cpu", "device": "cpu"})
    trainer = trainer_for(cfg, tmp_path)
    start = [g["lr"] for g in trainer.optimizer.param_groups]
    trainer.run()
    end = [g["lr"] for g in trainer.optimizer.param_groups]
    assert end == pytest.approx([lr * AUTO_FINAL_FACTOR for lr in start])


def test_the_automatic_weight_of_the_relative_laplacian_comes_from_the_start_mesh(
        tmp_path, trainer_for) -> None:
    """The relative Laplacian is 0 at the start: its automatic weight is set by the
    start's absolute Laplacian, and the positions move (before: a weight of
    0.025 / 1e-12 held every vertex within 1e-4 of the start)."""
    from difflod.config import load_config

    cfg = load_config(None, {"ref_mesh": "asset:spiky?triangles=2000&texture_res=16",
                             "base_mesh": "asset:sphere?triangles=200&texture_res=16",
                             "iter": 5, "batch": 1, "train_res": 32, "texture_res": [16, 16],
                             "relative_laplacian": True, "laplacian_factor": None,
                             "save_interval": 0, "backend": "cpu", "device": "cpu"})
    trainer = trainer_for(cfg, tmp_path)
    start = trainer.trainable.v_pos.detach().clone()
    absolute = float(trainer.laplacian.loss(start))
    trainer.run()
    first = 0.25 * 0.1 / absolute
    assert trainer.lap_weight.minimum == pytest.approx(0.02 * first)
    assert 0.02 * first < trainer.lap_weight.value <= first
    moved = (trainer.trainable.v_pos.detach() - start).norm(dim=1).max()
    assert float(moved) > 1e-3  # Adam's steps at lr 0.01, not held
