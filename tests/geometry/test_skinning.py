from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difflod.errors import InputFileError
from difflod.geometry.normals import with_normals
from difflod.geometry.skinning import load_nvdiffmodeling_skin, skin_mesh, skin_positions
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
