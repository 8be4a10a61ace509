from __future__ import annotations

import pytest
import torch

from difflod.geometry.laplacian import UniformLaplacian, laplacian_loss

from ._shapes import cube, grid


def _reference_loss(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    nbrs: list[set[int]] = [set() for _ in range(len(v))]
    for a, b, c in f.tolist():
        for i, j in ((a, b), (b, c), (c, a)):
            nbrs[i].add(j)
            nbrs[j].add(i)
    rows = [v[sorted(n)].mean(0) - v[i] if n else torch.zeros(3, dtype=v.dtype)
            for i, n in enumerate(nbrs)]
    return torch.stack(rows).pow(2).mean()


def test_matches_loop_reference_and_matrix() -> None:
    v, f, _ = grid(3)
    v = v + 0.1 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1))
    lap = UniformLaplacian(f, len(v))
    torch.testing.assert_close(lap.loss(v), _reference_loss(v, f))
    torch.testing.assert_close(torch.sparse.mm(lap.matrix(), v), lap.apply(v))


def test_flat_grid_interior_is_zero_and_relative() -> None:
    v, f, _ = grid(4)
    lap = UniformLaplacian(f, len(v))
    lv = lap.apply(v)
    interior = (v[:, 0].abs() < 0.99) & (v[:, 1].abs() < 0.99)
    assert float(lv[interior].abs().max()) < 1e-6
    # relative form: a translated copy has zero loss against the original
    assert float(lap.loss(v + torch.tensor([1.0, 2, 3]), v)) < 1e-12
    # cube vertex: neighbours mean - itself, hand computed for vertex 0 (-1,-1,-1)
    cv, cf = cube()
    cl = UniformLaplacian(cf, 8).apply(cv)
    nb = {1, 2, 3, 4, 5, 6}  # cube vertex 0 is joined to these through the triangulation
    torch.testing.assert_close(cl[0], cv[sorted(nb)].mean(0) - cv[0])


def test_isolated_vertex_contributes_zero() -> None:
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [9, 9, 9]])
    f = torch.tensor([[0, 1, 2]])
    lap = UniformLaplacian(f, 4)
    assert torch.equal(lap.apply(v)[3], torch.zeros(3))
    assert laplacian_loss(v, f).item() == pytest.approx(lap.loss(v).item())


def test_gradcheck() -> None:
    v, f = cube(torch.float64)
    v = (v + 0.1 * torch.rand(v.shape, dtype=torch.float64)).requires_grad_()
    ref = torch.rand(v.shape, dtype=torch.float64)
    lap = UniformLaplacian(f, 8)
    assert torch.autograd.gradcheck(lambda x: lap.loss(x), (v,))
    assert torch.autograd.gradcheck(lambda x: lap.loss(x, ref), (v,))


def test_validation() -> None:
    v, f = cube()
    with pytest.raises(ValueError, match="t_pos_idx"):
        UniformLaplacian(f, 5)
    lap = UniformLaplacian(f, 8)
    with pytest.raises(ValueError, match="v_ref"):
        lap.loss(v, v[:4])
    with pytest.raises(ValueError, match="x must be"):
        lap.loss(v[:4])
