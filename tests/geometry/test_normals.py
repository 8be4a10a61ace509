from __future__ import annotations

import pytest
import torch

from difflod.geometry.normals import face_normals, vertex_normals, with_normals
from difflod.mesh import Mesh

from ._shapes import cube, uv_sphere


def test_cube_corner_normals_are_diagonals() -> None:
    v, f = cube()
    n = vertex_normals(v, f)
    # angle weighting is symmetric on a cube even though the triangulation is not
    torch.testing.assert_close(n, v / 3 ** 0.5, atol=1e-6, rtol=0)


def test_sphere_normals_point_outward() -> None:
    v, f, _ = uv_sphere(12, 24)
    # merge duplicate seam/pole vertices so the sphere is closed
    uniq, inv = torch.unique(torch.round(v * 1e5), dim=0, return_inverse=True)
    count = torch.bincount(inv, minlength=len(uniq)).float()[:, None]
    vp = torch.zeros(len(uniq), 3).index_add(0, inv, v) / count
    n = vertex_normals(vp, inv[f])
    cos = (n * vp / vp.norm(dim=1, keepdim=True)).sum(1)
    assert float(cos.min()) > 0.995


def test_face_normals_ccw() -> None:
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    torch.testing.assert_close(face_normals(v, torch.tensor([[0, 1, 2]])),
                               torch.tensor([[0.0, 0, 1]]))
    torch.testing.assert_close(face_normals(v, torch.tensor([[0, 2, 1]])),
                               torch.tensor([[0.0, 0, -1]]))


def test_degenerate_and_isolated_are_finite() -> None:
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 0, 0], [5, 5, 5]],
                     requires_grad=True)
    f = torch.tensor([[0, 1, 2], [0, 3, 1]])  # collinear, and repeated position
    n = vertex_normals(v, f)
    assert torch.isfinite(n).all()
    torch.testing.assert_close(n[4], torch.tensor([0.0, 0, 1]))
    n.sum().backward()
    assert torch.isfinite(v.grad).all()


def test_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.rand(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4], [1, 4, 3]])
    assert torch.autograd.gradcheck(lambda x: vertex_normals(x, f), (v,))
    assert torch.autograd.gradcheck(lambda x: face_normals(x, f), (v,))


def test_with_normals_and_validation() -> None:
    v, f = cube()
    m = with_normals(Mesh(v_pos=v, t_pos_idx=f)).validate()
    assert m.v_nrm is not None and torch.equal(m.t_nrm_idx, f)
    with pytest.raises(ValueError, match="v_pos"):
        vertex_normals(v[:, :2], f)
    with pytest.raises(ValueError, match="t_pos_idx"):
        vertex_normals(v, f.float())
    with pytest.raises(ValueError, match="t_pos_idx"):
        vertex_normals(v, f + 10)
