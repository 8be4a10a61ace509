"""SmoothPositions: x = (I + lambda L)^-1 u (Nicolet et al. 2021) against a dense solve,
values and gradients, and the smoothing it does to a gradient step."""

from __future__ import annotations

import pytest
import torch

from difflod.assets import make
from difflod.geometry.smooth_positions import SmoothPositions


def _dense(tris: torch.Tensor, n: int, lam: float) -> torch.Tensor:
    """I + lambda (D - A), built from the triangles' edges independently."""
    m = torch.eye(n, dtype=torch.float64)
    adj = torch.zeros(n, n, dtype=torch.float64)
    for f in tris.tolist():
        for k in range(3):
            i, j = f[k], f[(k + 1) % 3]
            adj[i, j] = adj[j, i] = 1.0
    return m + lam * (torch.diag(adj.sum(1)) - adj)


def test_solve_and_gradient_equal_a_dense_solve() -> None:
    mesh = make("sphere", triangles=200, seed=0)
    n = mesh.num_vertices
    sp = SmoothPositions(mesh.t_pos_idx, n, 5.0, torch.device("cpu"))
    dense = _dense(mesh.t_pos_idx, n, 5.0)
    u = sp.to_param(mesh.v_pos)
    torch.testing.assert_close(u.double(), dense @ mesh.v_pos.double(), rtol=1e-6, atol=1e-6)
    u = u.clone().requires_grad_(True)
    x = sp.positions(u)
    # float32 factor and solve: relative error ~1e-6 times the condition number (~1e2)
    torch.testing.assert_close(x.double(), mesh.v_pos.double(), rtol=0, atol=2e-4)
    w = torch.randn(n, 3, generator=torch.Generator().manual_seed(1))
    (x * w).sum().backward()
    want = torch.linalg.solve(dense, w.double())  # M symmetric: grad_u = M^-1 w
    torch.testing.assert_close(u.grad.double(), want, rtol=0, atol=2e-4)


def test_a_step_on_u_moves_the_positions_smoothly() -> None:
    """A gradient spike at one vertex spreads to its neighbours through M^-1."""
    mesh = make("sphere", triangles=200, seed=0)
    sp = SmoothPositions(mesh.t_pos_idx, mesh.num_vertices, 10.0, torch.device("cpu"))
    spike = torch.zeros(mesh.num_vertices, 3)
    spike[0, 2] = 1.0
    moved = sp.solve(spike)[:, 2]
    ring = mesh.t_pos_idx[(mesh.t_pos_idx == 0).any(1)].unique()
    ring = ring[ring != 0]
    assert 0 < float(moved[ring].min()) and float(moved[ring].max()) < float(moved[0])
    assert float(moved.sum()) == pytest.approx(1.0, rel=1e-4)  # M's rows sum to 1


def test_bad_smoothing_is_refused() -> None:
    mesh = make("sphere", triangles=50, seed=0)
    with pytest.raises(ValueError, match="smoothing must be > 0"):
        SmoothPositions(mesh.t_pos_idx, mesh.num_vertices, 0.0, torch.device("cpu"))
