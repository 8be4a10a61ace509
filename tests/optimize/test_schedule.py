"""Learning-rate and Laplacian-weight schedules match nvdiffmodeling's formulas."""

from __future__ import annotations

import math

import pytest

from difflod.optimize.schedule import LaplacianWeight, lr_factor


def test_lr_factor() -> None:
    assert lr_factor(0) == 1.0
    assert lr_factor(5000) == pytest.approx(0.1)
    assert lr_factor(10000, 0.0001) == pytest.approx(0.1)


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
