"""Shared fixtures: the cuda fixture skips GPU tests where torch sees no GPU."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def cuda() -> torch.device:
    """The CUDA device; skips the test (with a reason) where there is none."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU backend tests run only on a GPU machine")
    return torch.device("cuda")
