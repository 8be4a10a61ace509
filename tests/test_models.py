"""Model specs: files, asset: specs, and nvdiffmodeling's mtl_override end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflod.assets import make
from difflod.config import load_config
from difflod.errors import DiffLodError, InputFileError
from difflod.io import save
from difflod.models import open_model
from difflod.run.train import train


@pytest.fixture
def obj_model(tmp_path: Path) -> Path:
    path = tmp_path / "model" / "mesh.obj"
    path.parent.mkdir()
    save(make("sphere", triangles=300, texture_res=16), path)
    return path


def _override(tmp_path: Path, name: str) -> Path:
    mtl = tmp_path / "override" / "gold.mtl"
    mtl.parent.mkdir(exist_ok=True)
    mtl.write_text(f"newmtl {name}\nKd 1.0 0.5 0.0\nKs 0.0 0.2 1.0\n")
    return mtl


def test_asset_spec_and_file_spec(obj_model: Path) -> None:
    # every option of the spec reaches assets.make: the same tensors as a direct call
    a = open_model("asset:sphere?triangles=300&texture_res=16&seed=3")
    direct = make("sphere", triangles=300, texture_res=16, seed=3)
    torch.testing.assert_close(a.v_pos, direct.v_pos, rtol=0, atol=0)
    assert torch.equal(a.t_pos_idx, direct.t_pos_idx)
    assert not torch.equal(a.materials[0].kd, make("sphere", triangles=300, texture_res=16,
                                                   seed=0).materials[0].kd)
    assert a.materials[0].kd.shape[:2] == (16, 16)
    # a file spec loads that file: the model saved by the fixture, corner by corner
    # (positions printed with 9 significant digits; UVs likewise; kd stored as 8-bit sRGB:
    # half a step, 0.5/255, times the sRGB curve's steepest slope 2.4/1.055 = 0.0045 linear)
    b = open_model(obj_model)
    saved = make("sphere", triangles=300, texture_res=16)
    assert b.num_triangles == saved.num_triangles
    torch.testing.assert_close(b.v_pos[b.t_pos_idx], saved.v_pos[saved.t_pos_idx],
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(b.v_tex[b.t_tex_idx], saved.v_tex[saved.t_tex_idx],
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(b.materials[0].kd, saved.materials[0].kd, rtol=0, atol=0.0045)
    with pytest.raises(DiffLodError, match="must be an integer"):
        open_model("asset:sphere?triangles=many")


def test_mtl_override_replaces_materials(obj_model: Path, tmp_path: Path) -> None:
    name = open_model(obj_model).materials[0].name
    mesh = open_model(obj_model, mtl_override=_override(tmp_path, name))
    m = mesh.materials[0]
    # the override's constants replace the file's 16x16 textures; Kd is sRGB in MTL files:
    # 1.0, 0.5, 0.0 are linear 1.0, 0.2140, 0.0 (IEC 61966-2-1); Ks is linear
    torch.testing.assert_close(m.kd.reshape(-1), torch.tensor([1.0, 0.21404, 0.0]),
                               rtol=0, atol=1e-4)
    torch.testing.assert_close(m.ks.reshape(-1), torch.tensor([0.0, 0.2, 1.0]))
    assert torch.equal(mesh.v_pos, open_model(obj_model).v_pos)  # geometry untouched
    with pytest.raises(InputFileError, match="no such MTL file"):
        open_model(obj_model, mtl_override=tmp_path / "nope.mtl")


def test_training_uses_mtl_override(obj_model: Path, tmp_path: Path) -> None:
    name = open_model(obj_model).materials[0].name
    cfg = load_config(None, {
        "ref_mesh": str(obj_model), "mtl_override": str(_override(tmp_path, name)),
        "base_mesh": "asset:sphere?triangles=100&texture_res=16", "iter": 1, "batch": 1,
        "train_res": 16, "texture_res": [16, 16], "save_interval": 0, "eval_views": 1,
        "eval_res": 16, "backend": "cpu", "device": "cpu", "out_dir": "mtl"})
    result = train(cfg, out_root=tmp_path / "out", quiet=True)
    # not random_textures: the candidate's textures start from the (overridden) reference
    ks = result.mesh.materials[0].ks
    assert float(ks[..., 2].mean()) > 0.9
    bad = cfg.replace(mtl_override=str(tmp_path / "missing.mtl"))
    with pytest.raises(InputFileError, match="missing.mtl"):
        train(bad, out_root=tmp_path / "out2", quiet=True)
