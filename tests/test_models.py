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
    a = open_model("asset:sphere?triangles=300&texture_res=16")
    b = open_model(obj_model)
    assert a.num_triangles == b.num_triangles
    with pytest.raises(DiffLodError, match="must be an integer"):
        open_model("asset:sphere?triangles=many")


def test_mtl_override_replaces_materials(obj_model: Path, tmp_path: Path) -> None:
    name = open_model(obj_model).materials[0].name
    mesh = open_model(obj_model, mtl_override=_override(tmp_path, name))
    m = mesh.materials[0]
    assert m.kd.shape[:2] == (1, 1)
    assert torch.allclose(m.ks[0, 0], torch.tensor([0.0, 0.2, 1.0]))
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
