"""Fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from difflod.config import TrainConfig
from difflod.models import open_model
from difflod.optimize.trainer import Trainer, prepare_meshes


@pytest.fixture
def trainer_for() -> Callable[[TrainConfig, Path], Trainer]:
    """Builds a quiet Trainer on the CPU from a config, its models opened and
    prepared as `difflod train` does."""
    def build(cfg: TrainConfig, out_dir: Path) -> Trainer:
        ref, base = open_model(cfg.ref_mesh), open_model(cfg.base_mesh)
        ref_n, base_n, _ = prepare_meshes(ref, base, cfg, torch.device("cpu"))
        return Trainer(cfg, ref_n, base_n, out_dir, quiet=True)

    return build
