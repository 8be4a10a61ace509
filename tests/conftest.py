"""Shared fixtures: the cuda fixture skips GPU tests where torch sees no GPU;
run_simulated runs a script under numba's CUDA simulator; require_tool fails a
test whose outside tool (chromium, the glTF validator) is missing under CI=true,
and skips it elsewhere with the way to install it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch


@pytest.fixture
def cuda() -> torch.device:
    """The CUDA device; skips the test (with a reason) where there is none."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU backend tests run only on a GPU machine")
    return torch.device("cuda")


def _run_simulated(script: str, timeout: int = 600) -> str:
    """Run `script` with `python -c` under NUMBA_ENABLE_CUDASIM=1 (chosen before
    numba.cuda is first imported, hence a fresh process); assert it exits 0;
    return its stdout."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture
def run_simulated() -> Callable[..., str]:
    """`run_simulated(script, timeout=600) -> stdout`: the CUDA kernels' tests without a GPU."""
    return _run_simulated


def _require_tool(found: bool, what: str, install: str) -> None:
    if found:
        return
    message = f"{what} is not installed ({install})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide it (.ci/run installs it or stops)",
                    pytrace=False)
    pytest.skip(message)


@pytest.fixture
def require_tool() -> Callable[[bool, str, str], None]:
    """`require_tool(found, what, install)`: under CI=true a missing tool fails the test
    (a skipped check must not pass CI); on a developer's machine it skips, saying how
    to install the tool."""
    return _require_tool
