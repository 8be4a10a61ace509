"""sample_surface: points on the triangles, area-weighted, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from difflod.geometry.sampling import sample_surface

# two triangles in z = 0: the first has area 2, the second area 0.5
V_POS = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [3, 0, 0], [4, 0, 0], [3, 1, 0]], float)
T_POS_IDX = np.array([[0, 1, 2], [3, 4, 5]])


def test_points_lie_on_their_triangles() -> None:
    pts, tri, bary = sample_surface(V_POS, T_POS_IDX, 500, np.random.default_rng(1))
    assert pts.shape == (500, 3) and tri.shape == (500,) and bary.shape == (500, 3)
    assert np.all(bary >= 0) and np.allclose(bary.sum(1), 1.0)
    corners = V_POS[T_POS_IDX[tri]]
    assert np.allclose(np.einsum("nk,nkd->nd", bary, corners), pts)


def test_triangles_drawn_by_area_and_reproducible() -> None:
    _, tri, _ = sample_surface(V_POS, T_POS_IDX, 20000, np.random.default_rng(2))
    assert abs(float(np.mean(tri == 0)) - 0.8) < 0.02
    a = sample_surface(V_POS, T_POS_IDX, 50, np.random.default_rng(3))[0]
    b = sample_surface(V_POS, T_POS_IDX, 50, np.random.default_rng(3))[0]
    assert np.array_equal(a, b)


def test_no_triangles_is_an_error() -> None:
    with pytest.raises(ValueError, match="no triangles"):
        sample_surface(V_POS, np.zeros((0, 3), int), 10, np.random.default_rng(0))
