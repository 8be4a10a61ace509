"""numba's threading layer for the "cpu" kernels (backends/cpu_threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import pytest

from difflod.render.backends.cpu_threads import ORDER, prefer_openmp

# one parallel "cpu" kernel (visibility of two triangles), then the layer numba
# started, then a normal exit
RASTERIZE_THEN_LAYER = """
import numba, torch
from difflod.render.backends import get_backend
clip = torch.tensor([[[-1., -1., 0.5, 1.], [1., -1., 0.5, 1.], [0., 1., 0.5, 1.],
                      [-1., 1., 0.2, 1.]]])
tris = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
ids = get_backend("cpu", "cpu").visibility(clip, tris, 8, 8)
assert int((ids > 0).sum()) > 0
print(numba.threading_layer())
"""


def _layer_in_fresh_process(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING")}
    done = subprocess.run([sys.executable, "-c", RASTERIZE_THEN_LAYER], check=False,
                          capture_output=True, text=True, env={**clean, **env}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()[-1]


def _loadable(layer: str) -> bool:
    """Whether numba's pool for `layer` loads in a fresh process (its library found)."""
    module = {"omp": "omppool", "tbb": "tbbpool", "workqueue": "workqueue"}[layer]
    code = f"import numba.np.ufunc.{module}"
    return subprocess.run([sys.executable, "-c", code], check=False,
                          capture_output=True).returncode == 0


def test_the_cpu_kernels_start_the_first_loadable_layer_of_the_order() -> None:
    expected = next(layer for layer in ORDER if _loadable(layer))
    assert _layer_in_fresh_process() == expected


def test_a_users_layer_is_kept() -> None:
    assert _layer_in_fresh_process(NUMBA_THREADING_LAYER="workqueue") == "workqueue"
    assert _layer_in_fresh_process(NUMBA_THREADING_LAYER_PRIORITY="workqueue omp tbb") \
        == "workqueue"


@pytest.mark.parametrize("env, sets", [
    ({}, True),
    ({"NUMBA_THREADING_LAYER": "default"}, True),
    ({"NUMBA_THREADING_LAYER": "tbb"}, False),
    ({"NUMBA_THREADING_LAYER_PRIORITY": "tbb omp workqueue"}, False),
])
def test_prefer_openmp_sets_the_order_only_without_a_users_choice(
        env: dict[str, str], sets: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numba.config, "THREADING_LAYER_PRIORITY", ["tbb", "omp", "workqueue"])
    assert prefer_openmp(env) is sets
    assert numba.config.THREADING_LAYER_PRIORITY == \
        (list(ORDER) if sets else ["tbb", "omp", "workqueue"])
