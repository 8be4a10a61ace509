from __future__ import annotations

import pytest
import torch

from difflod.geometry.normals import with_normals
from difflod.geometry.subdivide import subdivide
from difflod.geometry.tangents import with_tangents
from difflod.mesh import Material, Mesh, Skin

from ._shapes import cube, uv_sphere


def test_counts_and_midpoints_on_cube() -> None:
    v, f = cube()
    m = subdivide(Mesh(v_pos=v, t_pos_idx=f), steps=2).validate()
    assert m.num_triangles == 12 * 16
    # Euler: closed genus-0 mesh keeps V - E + F = 2, so V = F/2 + 2
    assert m.num_vertices == m.num_triangles // 2 + 2
    one = subdivide(Mesh(v_pos=v, t_pos_idx=f))
    # first triangle (0,1,3): its 4 children; midpoint of edge (0,1)
    tri = one.v_pos[one.t_pos_idx[:4]]
    torch.testing.assert_close(tri[0, 1], (v[0] + v[1]) / 2)
    torch.testing.assert_close(tri[3].mean(0), v[f[0]].mean(0))  # centre child keeps centroid


def test_seams_stay_split_and_attributes_carried() -> None:
    v, f, uv = uv_sphere(4, 8)
    m = with_tangents(with_normals(Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=f)))
    # split UVs at a seam: use a separate UV buffer where one edge has two UV copies
    mats = (Material(name="a"), Material(name="b"))
    t_mat = torch.arange(m.num_triangles) % 2
    m = m.replace(materials=mats, t_mat=t_mat)
    s = subdivide(m).validate()
    assert torch.equal(s.t_mat, t_mat.repeat_interleave(4))
    # every child's UVs are the parent's UV interpolated at the same barycentrics as positions
    par_uv = m.v_tex[m.t_tex_idx]
    child_uv = s.v_tex[s.t_tex_idx].reshape(-1, 4, 3, 2)
    torch.testing.assert_close(child_uv[:, 0, 1], (par_uv[:, 0] + par_uv[:, 1]) / 2)
    torch.testing.assert_close(s.v_nrm.norm(dim=1), torch.ones(s.v_nrm.shape[0]))
    assert s.v_tng.shape[1] == 4


def test_uv_seam_edge_not_merged() -> None:
    # two triangles sharing a position edge but with different UVs along it
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    f = torch.tensor([[0, 1, 2], [1, 3, 2]])
    uv = torch.tensor([[0.0, 0], [1, 0], [0, 1], [0.5, 0.5], [0.9, 0.9], [0.6, 0.9]])
    ft = torch.tensor([[0, 1, 2], [3, 4, 5]])
    s = subdivide(Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=ft))
    assert s.num_vertices == 4 + 5  # shared position edge -> one midpoint
    assert s.v_tex.shape[0] == 6 + 6  # UV edges not shared -> six midpoints


def test_skin_weights_union_top4() -> None:
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    f = torch.tensor([[0, 1, 2]])
    joints = torch.tensor([[0, 1, 2, 3], [3, 4, 5, 6], [0, 0, 0, 0]])
    weights = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.5, 0.3, 0.1, 0.1], [1.0, 0, 0, 0]])
    skin = Skin(times=torch.zeros(1), matrices=torch.eye(4).repeat(1, 7, 1, 1))
    s = subdivide(Mesh(v_pos=v, t_pos_idx=f, v_joints=joints, v_weights=weights, skin=skin))
    s.validate()
    mid01 = s.t_pos_idx[0, 1]
    got = dict(zip(s.v_joints[mid01].tolist(), s.v_weights[mid01].tolist()))
    # union: j0 .2, j1 .15, j2 .1, j3 .05+.25=.3, j4 .15 ... top-4 = j3, j0, {j1|j4}, {j4|j1}
    assert set(got) == {3, 0, 1, 4}
    assert got[3] == pytest.approx(0.3 / 0.8) and got[0] == pytest.approx(0.2 / 0.8)
    torch.testing.assert_close(s.v_weights.sum(1), torch.ones(s.num_vertices))


def test_gradient_flows_and_validation() -> None:
    v, f = cube()
    v = v.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: subdivide(Mesh(v_pos=x, t_pos_idx=f)).v_pos, (v,))
    with pytest.raises(ValueError, match="steps"):
        subdivide(Mesh(v_pos=v, t_pos_idx=f), steps=-1)
