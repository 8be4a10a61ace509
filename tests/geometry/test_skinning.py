from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difflod.errors import InputFileError
from difflod.geometry.normals import with_normals
from difflod.geometry.skinning import (
    load_nvdiffmodeling_skin,
    pose_views,
    skin_mesh,
    skin_positions,
)
from difflod.mesh import Mesh, Skin

from ._shapes import cube


def _rot_z(a: float, t=(0.0, 0.0, 0.0)) -> torch.Tensor:
    m = torch.eye(4)
    m[:2, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m[:3, 3] = torch.tensor(t)
    return m


def test_skin_positions_reference() -> None:
    v = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    mats = torch.stack([torch.eye(4), _rot_z(math.pi / 2, (0, 0, 2))])
    joints = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0]])
    weights = torch.tensor([[0.5, 0.5, 0, 0], [1.0, 0, 0, 0]])
    out = skin_positions(v, joints, weights, mats)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5, 1.0], [-1.0, 0, 2]]))


def test_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.rand(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mats = torch.rand(3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    joints = torch.tensor([[0, 1, 2, 0], [2, 1, 0, 0], [1, 1, 1, 1], [0, 2, 1, 0]])
    w = torch.rand(4, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: skin_positions(a, joints, w, b), (v, mats))


def _skinned_cube() -> Mesh:
    """The cube on one joint turning by 90 degrees about z over one second."""
    v, f = cube()
    skin = Skin(times=torch.tensor([0.0, 1.0]),
                matrices=torch.stack([torch.eye(4), _rot_z(math.pi / 2)])[:, None])
    return with_normals(Mesh(v_pos=v, t_pos_idx=f,
                             v_joints=torch.zeros(8, 4, dtype=torch.int64),
                             v_weights=torch.tensor([[1.0, 0, 0, 0]]).repeat(8, 1), skin=skin))


def test_skin_mesh_poses_normals_at_time() -> None:
    m = _skinned_cube()
    v, f = m.v_pos, m.t_pos_idx
    posed = skin_mesh(m, 1.0)
    r = _rot_z(math.pi / 2)[:3, :3]
    torch.testing.assert_close(posed.v_pos, v @ r.T)
    torch.testing.assert_close(posed.v_nrm, m.v_nrm @ r.T)
    assert posed.skin is None
    torch.testing.assert_close(skin_mesh(m, 0.0).v_pos, v)
    assert skin_mesh(Mesh(v_pos=v, t_pos_idx=f), 0.5).v_pos is v
    # a validated mesh (the trainer's) skips only the joint range read: the same pose
    trusted = skin_mesh(m.validate(), 1.0, validated=True)
    assert torch.equal(trusted.v_pos, posed.v_pos) and torch.equal(trusted.v_nrm, posed.v_nrm)


def test_skin_at_times_matches_at_one_by_one() -> None:
    """The device lookup (no host sync) gives `at`'s matrices: between keys,
    on keys and clamped outside the range."""
    g = torch.Generator().manual_seed(3)
    skin = Skin(times=torch.tensor([0.5, 1.0, 2.5, 4.0]),
                matrices=torch.rand(4, 3, 4, 4, generator=g))
    t = torch.tensor([-1.0, 0.5, 0.7, 1.0, 1.3, 2.5, 3.99, 4.0, 9.0])
    got = skin.at_times(t)
    assert got.shape == (9, 3, 4, 4)
    for k, tk in enumerate(t.tolist()):
        torch.testing.assert_close(got[k], skin.at(tk), rtol=1e-6, atol=1e-6)
    assert skin.start == 0.5 and skin.duration == 3.5
    one = Skin(times=torch.tensor([2.0]), matrices=torch.rand(1, 2, 4, 4, generator=g))
    assert torch.equal(one.at_times(torch.tensor([0.0, 5.0])), one.matrices.expand(2, -1, -1, -1))


def _with_uv_and_tangents(m: Mesh) -> Mesh:
    """`m` with UVs (one per corner) and tangents, and two materials."""
    from difflod.geometry.tangents import with_tangents
    from difflod.mesh import Material

    f = m.num_triangles
    uv = torch.rand(f * 3, 2, generator=torch.Generator().manual_seed(1))
    m = m.replace(v_tex=uv, t_tex_idx=torch.arange(f * 3).reshape(f, 3),
                  t_mat=torch.arange(f) % 2, materials=(Material(), Material()),
                  v_color=torch.rand(m.num_vertices, 4))
    return with_tangents(m)


def test_pose_views_is_one_posed_copy_per_time() -> None:
    m = _with_uv_and_tangents(_skinned_cube())
    assert m.v_tng is not None
    times = torch.tensor([0.0, 0.25, 1.0])
    copies = pose_views(m, times)
    v, f, n = m.num_vertices, m.num_triangles, m.v_nrm.shape[0]
    assert copies.num_vertices == 3 * v and copies.num_triangles == 3 * f
    assert copies.skin is None and copies.v_joints is None
    for b, t in enumerate(times.tolist()):
        want = skin_mesh(m, t)
        torch.testing.assert_close(copies.v_pos[b * v:(b + 1) * v], want.v_pos)
        torch.testing.assert_close(copies.v_nrm[b * n:(b + 1) * n], want.v_nrm)
        nt = m.v_tng.shape[0]
        torch.testing.assert_close(copies.v_tng[b * nt:(b + 1) * nt], want.v_tng)
        rows = slice(b * f, (b + 1) * f)
        assert torch.equal(copies.t_pos_idx[rows], m.t_pos_idx + b * v)
        assert torch.equal(copies.t_nrm_idx[rows], m.t_nrm_idx + b * n)
        assert torch.equal(copies.t_tng_idx[rows], m.t_tng_idx + b * nt)
        assert torch.equal(copies.t_tex_idx[rows], m.t_tex_idx)
        assert torch.equal(copies.t_mat[rows], m.t_mat)
        assert torch.equal(copies.v_color[b * v:(b + 1) * v], m.v_color)
    assert copies.v_tex is m.v_tex
    copies.validate()
    # a mesh with no skin: unposed copies
    still = pose_views(m.replace(skin=None, v_joints=None, v_weights=None), times[:2])
    torch.testing.assert_close(still.v_pos, m.v_pos.repeat(2, 1))


def test_pose_views_gradient_reaches_the_bind_positions() -> None:
    m = _skinned_cube()
    v_pos = m.v_pos.clone().requires_grad_(True)
    copies = pose_views(m.replace(v_pos=v_pos), torch.tensor([0.0, 1.0]))
    w = torch.rand_like(copies.v_pos)
    (copies.v_pos * w).sum().backward()
    r = _rot_z(math.pi / 2)[:3, :3]
    # d/dv of (v . w0) + (R v . w1) = w0 + R^T w1
    torch.testing.assert_close(v_pos.grad, w[:8] + w[8:] @ r)


def test_skin_mesh_on_a_gpu_poses_as_on_the_cpu(cuda: torch.device) -> None:
    """A mesh moved to the GPU (skin keys included) poses at any time as on the
    CPU (the key search once read a CPU time against GPU keys)."""
    mesh = _skinned_cube()
    on_gpu = mesh.to(cuda)
    for t in (0.0, 0.3, 0.75, 1.0):
        want, got = skin_mesh(mesh, t), skin_mesh(on_gpu, t)
        assert got.v_pos.device.type == "cuda"
        torch.testing.assert_close(got.v_pos.cpu(), want.v_pos, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.v_nrm.cpu(), want.v_nrm, rtol=1e-5, atol=1e-6)


def test_load_nvdiffmodeling_files(tmp_path) -> None:
    v, f = cube()
    m = Mesh(v_pos=v, t_pos_idx=f)
    # row-vector bone matrices: translation in the last row
    row = np.stack([np.eye(4), np.eye(4)]).astype(np.float32)[:, None].repeat(5, 1)
    row[1, 2, 3, :3] = [0.0, 0.0, 7.0]
    w = np.zeros((8, 5), np.float32)
    w[:, 2] = -1.0  # nvdiffmodeling takes abs()
    w[:, 4] = 0.25
    w[:, 0] = 0.01
    w[:, 1] = 0.02
    w[:, 3] = 0.005  # the smallest: dropped by top-4
    np.save(tmp_path / "m.bones.npy", row)
    np.save(tmp_path / "m.weights.npy", w)
    out = load_nvdiffmodeling_skin(m, tmp_path / "m.bones.npy", tmp_path / "m.weights.npy")
    out.validate()
    assert out.v_joints[0].tolist() == [2, 4, 1, 0]
    torch.testing.assert_close(out.v_weights.sum(1), torch.ones(8))
    posed = skin_mesh(out, 1.0)
    total = 1.0 + 0.25 + 0.02 + 0.01
    torch.testing.assert_close(posed.v_pos[:, 2], v[:, 2] + 7.0 / total)


def test_load_errors_name_the_file(tmp_path) -> None:
    v, f = cube()
    m = Mesh(v_pos=v, t_pos_idx=f)
    np.save(tmp_path / "b.npy", np.zeros((2, 3, 4, 4), np.float32))
    np.save(tmp_path / "w.npy", np.ones((7, 3), np.float32))
    with pytest.raises(InputFileError, match=r"w\.npy.*\[8,3\]"):
        load_nvdiffmodeling_skin(m, tmp_path / "b.npy", tmp_path / "w.npy")
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(InputFileError, match=r"bad\.npy"):
        load_nvdiffmodeling_skin(m, tmp_path / "bad.npy", tmp_path / "w.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputFileError, match=r"junk\.npy"):
        load_nvdiffmodeling_skin(m, tmp_path / "junk.npy", tmp_path / "w.npy")
    with pytest.raises(InputFileError, match="not found"):
        load_nvdiffmodeling_skin(m, tmp_path / "none.npy", tmp_path / "w.npy")


def test_attribute_owner_is_the_first_corners_position_and_zero_when_unused() -> None:
    from difflod.geometry.skinning import _attr_owner

    t_attr = torch.tensor([[0, 1, 2], [2, 3, 4]])
    t_pos = torch.tensor([[5, 6, 7], [7, 8, 9]])
    assert _attr_owner(t_attr, t_pos, 7).tolist() == [5, 6, 7, 8, 9, 0, 0]
    assert _attr_owner(t_attr.new_zeros(0, 3), t_pos.new_zeros(0, 3), 2).tolist() == [0, 0]


def test_validation() -> None:
    v = torch.zeros(2, 3)
    j = torch.zeros(2, 4, dtype=torch.int64)
    w = torch.ones(2, 4)
    with pytest.raises(ValueError, match="matrices"):
        skin_positions(v, j, w, torch.eye(4))
    with pytest.raises(ValueError, match="v_joints"):
        skin_positions(v, j + 3, w, torch.eye(4)[None])
    with pytest.raises(ValueError, match="v_weights"):
        skin_positions(v, j, w[:, :3], torch.eye(4)[None])
