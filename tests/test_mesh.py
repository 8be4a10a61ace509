"""Mesh / Material / Skin validation names the wrong field; transforms return copies."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from difflod.mesh import Material, Mesh, Skin


def tri_mesh(**changes: object) -> Mesh:
    base = {"v_pos": torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]),
            "t_pos_idx": torch.tensor([[0, 1, 2]]),
            "v_tex": torch.tensor([[0.0, 0], [1, 0], [0, 1]]),
            "t_tex_idx": torch.tensor([[0, 1, 2]])}
    base.update(changes)
    return Mesh(**base)  # type: ignore[arg-type]


def test_valid_mesh_and_facts() -> None:
    m = tri_mesh().validate()
    assert m.num_vertices == 3 and m.num_triangles == 1 and m.has_uv
    lo, hi = m.aabb()
    assert lo.tolist() == [0, 0, 0] and hi.tolist() == [1, 1, 0]
    assert m.material_ids().tolist() == [0]


@pytest.mark.parametrize("changes, needle", [
    ({"t_pos_idx": torch.tensor([[0, 1, 3]])}, "t_pos_idx holds index 3, out of range for 3"),
    ({"t_pos_idx": torch.tensor([[0, -1, 2]])}, "t_pos_idx holds index -1"),
    ({"t_pos_idx": torch.tensor([[0, 1, 2]], dtype=torch.int32)}, "t_pos_idx must be [1,3] int64"),
    ({"v_pos": torch.tensor([[0.0, 0, 0], [1, 0, math.nan], [0, 1, 0]])}, "v_pos holds NaN"),
    ({"v_pos": torch.zeros(3, 2)}, "v_pos must be [N,3]"),
    ({"t_tex_idx": None}, "v_tex and t_tex_idx must be given together"),
    ({"t_mat": torch.tensor([1])}, "t_mat indexes material 1"),
    ({"materials": ()}, "at least one material"),
    ({"materials": (Material(kd=torch.zeros(4, 4, 2)),)}, "kd must be"),
    ({"materials": (Material(alpha_mode="CUTOUT"),)}, "alpha_mode must be one of"),
    ({"v_joints": torch.zeros(3, 4, dtype=torch.int64), "v_weights": torch.ones(3, 4)},
     "v_joints given without a skin"),
])
def test_invalid_mesh_names_field(changes: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        tri_mesh(**changes).validate()


def test_skin_interpolates_and_validates() -> None:
    eye = torch.eye(4)
    moved = eye.clone()
    moved[0, 3] = 2.0
    skin = Skin(times=torch.tensor([0.0, 1.0]), matrices=torch.stack([eye, moved])[:, None])
    assert skin.validate().num_joints == 1 and skin.duration == 1.0
    assert float(skin.at(0.25)[0, 0, 3]) == pytest.approx(0.5)
    assert float(skin.at(-1.0)[0, 0, 3]) == 0.0 and float(skin.at(5.0)[0, 0, 3]) == 2.0
    with pytest.raises(ValueError, match="times must increase"):
        Skin(times=torch.tensor([1.0, 0.0]), matrices=torch.stack([eye, eye])[:, None]).validate()


def test_skin_picks_the_keys_around_a_time() -> None:
    # keys at 0, 0.5, 2 moving x by 0, 1, 4: on a key, its matrix; between, the
    # blend of the two keys around it
    mats = torch.eye(4).repeat(3, 1, 1, 1)
    mats[:, 0, 0, 3] = torch.tensor([0.0, 1.0, 4.0])
    skin = Skin(times=torch.tensor([0.0, 0.5, 2.0]), matrices=mats)
    for t, x in ((0.5, 1.0), (0.25, 0.5), (1.25, 2.5), (2.0, 4.0), (1.999, 3.998)):
        assert float(skin.at(t)[0, 0, 3]) == pytest.approx(x, abs=1e-5), t


def test_skin_reads_its_key_times_once_and_a_new_skin_its_own(monkeypatch) -> None:
    mats = torch.eye(4).repeat(3, 1, 1, 1)
    skin = Skin(times=torch.tensor([0.0, 0.5, 2.0]), matrices=mats)
    reads = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: reads.append(1) or real(t))
    for t in (0.1, 0.7, 1.9):
        skin.at(t)
    assert skin.duration == 2.0 and len(reads) == 1  # one copy to the host, not one a pose
    later = dataclasses.replace(skin, times=torch.tensor([0.0, 1.0, 3.0]))
    assert later.duration == 3.0 and len(reads) == 2


def test_replace_to_detach_return_copies() -> None:
    m = tri_mesh()
    pos = m.v_pos.clone().requires_grad_(True)
    g = m.replace(v_pos=pos * 2)
    assert g.detach().v_pos.requires_grad is False and m.v_pos.max() == 1.0
    assert g.to("cpu").materials[0].kd.shape == (1, 1, 3)


def test_clone_is_independent() -> None:
    m = tri_mesh()
    c = m.clone()
    m.v_pos.add_(1.0)
    m.materials[0].kd.add_(0.25)
    assert float(c.v_pos.max()) == 1.0 and float(c.materials[0].kd.max()) == 0.5
