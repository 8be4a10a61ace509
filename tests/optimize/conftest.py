"""Fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from difflod.config import TrainConfig
from difflod.models import open_model
from difflod.optimize.trainer import Trainer, prepare_meshes


def _build(meshes: tuple, cfg: TrainConfig, out_dir: Path) -> Trainer:
    ref_n, base_n, _ = prepare_meshes(*meshes, cfg, torch.device("cpu"))
    return Trainer(cfg, ref_n, base_n, out_dir, quiet=True)


@pytest.fixture
def trainer_for() -> Callable[[TrainConfig, Path], Trainer]:
    """Builds a quiet Trainer on the CPU from a config, its models opened and
    prepared as `difflod train` does."""
    def build(cfg: TrainConfig, out_dir: Path) -> Trainer:
        return _build((open_model(cfg.ref_mesh), open_model(cfg.base_mesh)), cfg, out_dir)

    return build


@pytest.fixture
def trainer_on() -> Callable[[tuple, TrainConfig, Path], Trainer]:
    """Builds a quiet Trainer on the CPU from (reference, base) meshes already
    opened (a module's fixture, shared by its tests) and a config."""
    return _build
