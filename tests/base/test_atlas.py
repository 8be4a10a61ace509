"""The xatlas atlas made in a child process (base/atlas.py)."""

import numpy as np
import pytest

from difflod.base.atlas import uv_atlas
from difflod.errors import DiffLodError
from difflod.models import open_model


def test_the_child_returns_a_packed_atlas_aligned_with_the_triangles() -> None:
    # not compared with an in-process xatlas: destroying one is the hang this avoids
    mesh = open_model("asset:knot?triangles=2000")
    pos = mesh.v_pos.numpy().astype(np.float32)
    tris = mesh.t_pos_idx.numpy()
    uvs, uv_idx = uv_atlas(pos, tris, 512)
    assert uvs.dtype == np.float32 and uv_idx.dtype == np.int64
    assert uv_idx.shape == tris.shape and 0 <= uv_idx.min() and uv_idx.max() == len(uvs) - 1
    assert 0.0 <= float(uvs.min()) and float(uvs.max()) <= 1.0
    # every triangle keeps an area in the atlas, and the charts fill a good part of it
    a, b, c = (uvs[uv_idx[:, k]] for k in range(3))
    area = 0.5 * np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
    assert float(area.min()) > 0.0 and float(area.sum()) > 0.3
    again = uv_atlas(pos, tris, 512)
    assert np.array_equal(again[0], uvs) and np.array_equal(again[1], uv_idx)


def test_a_failing_or_stuck_child_is_one_clear_error() -> None:
    pos = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    with pytest.raises(DiffLodError, match="xatlas failed on a 2-triangle mesh: .*Index out of range"):
        uv_atlas(pos, np.array([[0, 1, 2], [0, 2, 99]]), 64)
    with pytest.raises(DiffLodError, match="did not finish the atlas of a 1-triangle mesh in 0.01 s"):
        uv_atlas(pos, np.array([[0, 1, 2]]), 64, timeout=0.01)


def test_a_child_that_exits_without_an_atlas_is_one_clear_error(monkeypatch) -> None:
    import subprocess

    def silent(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 0, stdout=b"", stderr=b"")

    monkeypatch.setattr(subprocess, "run", silent)
    with pytest.raises(DiffLodError, match="returned no atlas for a 1-triangle mesh"):
        uv_atlas(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]]), 64)
