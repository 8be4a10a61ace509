from __future__ import annotations

import math

import pytest
import torch

from difflod.geometry.normals import with_normals
from difflod.geometry.transform import center_by_reference, transform, unit_size
from difflod.mesh import Mesh, Skin

from ._shapes import cube


def _mesh() -> Mesh:
    v, f = cube()
    v = v * torch.tensor([2.0, 1.0, 0.5]) + torch.tensor([3.0, -1.0, 4.0])
    return with_normals(Mesh(v_pos=v, t_pos_idx=f))


def test_unit_size_matches_nvdiffmodeling() -> None:
    m = unit_size(_mesh())
    lo, hi = m.aabb()
    torch.testing.assert_close(lo + hi, torch.zeros(3))
    assert float((hi - lo).max()) == pytest.approx(2.0)
    torch.testing.assert_close(hi - lo, torch.tensor([2.0, 1.0, 0.5]))


def test_center_by_reference() -> None:
    m = _mesh()
    ref = (torch.tensor([0.0, 0, 0]), torch.tensor([4.0, 2, 2]))
    out = center_by_reference(m, ref, 2.0)
    expect = (m.v_pos - torch.tensor([2.0, 1, 1])) * (2.0 / 4.0)
    torch.testing.assert_close(out.v_pos, expect)


def test_transform_rotation_normals_and_mirror_handedness() -> None:
    m = _mesh()
    c, s = math.cos(0.7), math.sin(0.7)
    rot = torch.tensor([[c, -s, 0, 1], [s, c, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1.0]])
    out = transform(m, rot)
    torch.testing.assert_close(out.v_pos, m.v_pos @ rot[:3, :3].T + rot[:3, 3])
    torch.testing.assert_close(out.v_nrm, m.v_nrm @ rot[:3, :3].T)
    # non-uniform scale: normals by the inverse transpose stay perpendicular to faces
    sc = torch.diag(torch.tensor([3.0, 1.0, 0.2, 1.0]))
    tri = Mesh(v_pos=torch.tensor([[0.0, 0, 0], [1, 0, 1], [0, 1, 1]]),
               t_pos_idx=torch.tensor([[0, 1, 2]]))
    tri = with_normals(tri)
    out = transform(tri, sc)
    e1, e2 = out.v_pos[1] - out.v_pos[0], out.v_pos[2] - out.v_pos[0]
    assert abs(float(out.v_nrm[0] @ e1)) < 1e-6 and abs(float(out.v_nrm[0] @ e2)) < 1e-6
    # mirror flips tangent handedness
    tng = torch.tensor([[1.0, 0, 0, 1.0]])
    m2 = tri.replace(v_tng=tng, t_tng_idx=torch.zeros(1, 3, dtype=torch.int64))
    mir = torch.diag(torch.tensor([-1.0, 1, 1, 1]))
    out = transform(m2, mir)
    torch.testing.assert_close(out.v_tng, torch.tensor([[-1.0, 0, 0, -1.0]]))


def test_transform_conjugates_skin() -> None:
    v, f = cube()
    pose = torch.eye(4)
    pose[:3, 3] = torch.tensor([0.0, 1.0, 0.0])
    skin = Skin(times=torch.zeros(1), matrices=pose[None, None])
    m = Mesh(v_pos=v, t_pos_idx=f, v_joints=torch.zeros(8, 4, dtype=torch.int64),
             v_weights=torch.tensor([[1.0, 0, 0, 0]]).repeat(8, 1), skin=skin)
    sc = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    out = transform(m, sc)
    posed = out.v_pos @ out.skin.matrices[0, 0, :3, :3].T + out.skin.matrices[0, 0, :3, 3]
    torch.testing.assert_close(posed, (v + torch.tensor([0.0, 1, 0])) * 2)


def test_gradients_match_finite_differences_and_the_matrix() -> None:
    m = _mesh()
    f64 = torch.float64
    g = torch.Generator().manual_seed(0)
    # projective (last row not 0 0 0 1, w in [1, 2.2] on this mesh): positions are
    # divided by w; float64 gradcheck holds both inputs' gradients to finite differences
    proj = (torch.eye(4, dtype=f64) + 0.1 * torch.rand(4, 4, generator=g, dtype=f64))
    v = m.v_pos.to(f64).requires_grad_()

    def moved(pos: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
        return transform(m.replace(v_pos=pos, v_nrm=None, t_nrm_idx=None), mat).v_pos

    assert torch.autograd.gradcheck(moved, (v, proj.requires_grad_()))
    # affine: d(sum(w * (v @ A^T + t)))/dv = w @ A, exactly
    aff = torch.eye(4, dtype=f64)
    aff[:3] = torch.rand(3, 4, generator=g, dtype=f64) * 2 - 1
    wts = torch.rand(m.num_vertices, 3, generator=g, dtype=f64)
    pos = m.v_pos.to(f64).requires_grad_()
    (moved(pos, aff) * wts).sum().backward()
    torch.testing.assert_close(pos.grad, wts @ aff[:3, :3], rtol=1e-12, atol=1e-12)


def test_validation() -> None:
    m = _mesh()
    with pytest.raises(ValueError, match="matrix"):
        transform(m, torch.eye(3))
    with pytest.raises(ValueError, match="singular"):
        transform(m, torch.zeros(4, 4))
    with pytest.raises(ValueError, match="extent"):
        unit_size(Mesh(v_pos=torch.zeros(3, 3), t_pos_idx=torch.tensor([[0, 1, 2]])))
