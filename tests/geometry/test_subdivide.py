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
    v, f, uv = uv_sphere(6, 8)
    # weld positions (the seam column and the poles are duplicated in v) while the UVs keep
    # their own indices: the u = 0 / u = 1 seam is then one position edge with two UV copies
    welded, remap = torch.unique((v * 1e4).round(), dim=0, return_inverse=True)
    copy = torch.zeros(welded.shape[0], dtype=torch.long)
    copy[remap] = torch.arange(v.shape[0])        # any one of the coinciding copies
    m = Mesh(v_pos=v[copy], t_pos_idx=remap[f], v_tex=uv, t_tex_idx=f)
    m = with_tangents(with_normals(m))
    mats = (Material(name="a"), Material(name="b"))
    t_mat = torch.arange(m.num_triangles) % 2
    m = m.replace(materials=mats, t_mat=t_mat)
    s = subdivide(m).validate()
    assert torch.equal(s.t_mat, t_mat.repeat_interleave(4))
    # children (a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca) of each parent, for
    # positions and UVs alike: the same corner weights in both buffers
    w = torch.tensor([[[1, 0, 0], [.5, .5, 0], [.5, 0, .5]], [[0, 1, 0], [0, .5, .5], [.5, .5, 0]],
                      [[0, 0, 1], [.5, 0, .5], [0, .5, .5]], [[.5, .5, 0], [0, .5, .5], [.5, 0, .5]]])
    for vals, idx, sub_vals, sub_idx in ((m.v_pos, m.t_pos_idx, s.v_pos, s.t_pos_idx),
                                         (m.v_tex, m.t_tex_idx, s.v_tex, s.t_tex_idx)):
        expect = torch.einsum("kcp,fpd->fkcd", w, vals[idx])
        torch.testing.assert_close(sub_vals[sub_idx].reshape(expect.shape), expect)
    # the seam: triangles on both sides share the midpoint position of a seam edge but
    # not its UV midpoint, which sits at u = 0 on one side and u = 1 on the other
    corner_pos, corner_uv = s.t_pos_idx.reshape(-1), s.t_tex_idx.reshape(-1)
    p, u = s.v_pos[corner_pos], s.v_tex[corner_uv]
    new_mid = corner_pos >= m.num_vertices                       # corners at new midpoints
    # on the y = 0, x > 0 meridian, away from the poles (whose UV copies fan out in u)
    seam = new_mid & (p[:, 1].abs() < 1e-6) & (p[:, 0] > 0) & (p[:, 2].abs() < 0.9)
    pos_ids, uv_ids = corner_pos[seam].unique(), corner_uv[seam].unique()
    assert pos_ids.numel() == 4                                  # one per seam edge off the poles
    assert uv_ids.numel() == 8 and bool((uv_ids >= m.v_tex.shape[0]).all())
    assert sorted(s.v_tex[uv_ids, 0].tolist()) == [0.0] * 4 + [1.0] * 4
    assert bool((u[seam, 0] < 1e-6).any()) and bool((u[seam, 0] > 1 - 1e-6).any())
    assert s.v_nrm is not None and s.v_tng is not None
    # midpoint normals: the renormalised mean of the edge's two normals; tangents the
    # same, with w (handedness) from the parent
    for vals, idx, sub_vals, sub_idx, n in ((m.v_nrm, m.t_nrm_idx, s.v_nrm, s.t_nrm_idx, 3),
                                            (m.v_tng, m.t_tng_idx, s.v_tng, s.t_tng_idx, 4)):
        par = vals[idx]                                             # [F,3,n]
        ab = (par[:, 0, :3] + par[:, 1, :3]) / 2
        child_ab = sub_vals[sub_idx].reshape(-1, 4, 3, n)[:, 0, 1]
        torch.testing.assert_close(child_ab[:, :3], ab / ab.norm(dim=1, keepdim=True))
        if n == 4:
            torch.testing.assert_close(child_ab[:, 3], par[:, 0, 3])


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


def test_vertex_colors_follow_the_new_vertices() -> None:
    v, f = cube()
    mesh = Mesh(v_pos=v, t_pos_idx=f)

    def field(p: torch.Tensor) -> torch.Tensor:  # affine in position: midpoints are exact
        rgb = torch.stack([0.5 + 0.25 * p[:, 0], 0.5 - 0.25 * p[:, 1], 0.5 + 0.1 * p[:, 2]], 1)
        return torch.cat([rgb, torch.ones_like(rgb[:, :1])], 1)

    out = subdivide(mesh.replace(v_color=field(mesh.v_pos)), 2).validate()
    assert out.v_color is not None and out.v_color.shape == (out.num_vertices, 4)
    torch.testing.assert_close(out.v_color, field(out.v_pos), atol=1e-6, rtol=0.0)
