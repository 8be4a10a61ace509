"""References that leave the model's folder: refused by default, read when allowed.

glTF buffer/image URIs, OBJ mtllib names and MTL texture paths; each escape
(`..`, absolute path, symbolic link, `file:` URI) is refused with one line
naming the reference and the setting, and read with allow_outside_paths.
Remote schemes stay refused either way; data: URIs are always read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from difflod.cli import main
from difflod.errors import InputFileError
from difflod.io import gltf, load, obj
from difflod.io.limits import ReadLimits
from difflod.mesh import Material, Mesh

ALLOW = ReadLimits(allow_outside_paths=True)


def _mesh() -> Mesh:
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    tri = torch.tensor([[0, 1, 2]])
    kd = torch.rand(4, 4, 3, generator=torch.Generator().manual_seed(0))
    return Mesh(v_pos=pos, t_pos_idx=tri, v_tex=pos[:, :2].clone(), t_tex_idx=tri.clone(),
                materials=(Material(kd=kd),))


@pytest.fixture
def gltf_outside(tmp_path: Path) -> tuple[Path, Path]:
    """model/m.gltf whose buffer m.bin was moved to outside/m.bin; returns (gltf, bin)."""
    model, outside = tmp_path / "model", tmp_path / "outside"
    model.mkdir(), outside.mkdir()
    gltf.write(_mesh(), model / "m.gltf")
    shutil.move(model / "m.bin", outside / "m.bin")
    return model / "m.gltf", outside / "m.bin"


def _set_uri(path: Path, uri: str) -> None:
    doc = json.loads(path.read_text())
    doc["buffers"][0]["uri"] = uri
    path.write_text(json.dumps(doc))


def _escapes(model: Path, target: Path) -> dict[str, str]:
    """URI of each kind of escape to `target` (a symbolic link is made in `model`)."""
    (model / "link.bin").symlink_to(target)
    return {"dotdot": f"../{target.parent.name}/{target.name}", "absolute": str(target),
            "symlink": "link.bin", "file_uri": target.as_uri()}


@pytest.mark.parametrize(("kind", "message"), [
    ("dotdot", r"buffer 0: URI '\.\./outside/m\.bin' leads outside the model's folder"),
    ("absolute", r"buffer 0: URI '/.*/m\.bin' is an absolute path, outside the model's folder"),
    ("symlink", r"buffer 0: URI 'link\.bin' leads outside the model's folder"),
    ("file_uri", r"buffer 0: URI 'file:///.*' is a file: URI, which may lead anywhere"),
])
def test_gltf_uri_escapes(gltf_outside: tuple[Path, Path], kind: str, message: str) -> None:
    path, target = gltf_outside
    _set_uri(path, _escapes(path.parent, target)[kind])
    with pytest.raises(InputFileError, match=message + r".*refused \(allow it with "
                                                       r"allow_outside_paths / "
                                                       r"--allow-outside-paths\)$"):
        gltf.read(path)
    mesh = gltf.read(path, limits=ALLOW)  # the same file, allowed: the buffer is read
    assert torch.equal(mesh.v_pos, _mesh().v_pos)


@pytest.mark.parametrize("uri", ["http://example.com/m.bin", "https://x/y.bin", "ftp://h/m.bin",
                                 "s3:bucket/m.bin"])
def test_remote_uris_refused_even_when_allowed(gltf_outside: tuple[Path, Path],
                                               uri: str) -> None:
    path, _ = gltf_outside
    _set_uri(path, uri)
    for limits in (None, ALLOW):
        with pytest.raises(InputFileError, match=r"URI '.*' is a \w+: URI; difflod reads only "
                                                 r"local files"):
            gltf.read(path, limits=limits)


def test_data_uri_and_inside_files_are_read(tmp_path: Path) -> None:
    gltf.write(_mesh(), tmp_path / "d.glb")
    (tmp_path / "sub").mkdir()
    gltf.write(_mesh(), tmp_path / "sub" / "e.gltf")
    assert load(tmp_path / "d.glb").num_triangles == 1
    doc = json.loads((tmp_path / "sub" / "e.gltf").read_text())
    doc["buffers"][0]["uri"] = "./x/../e.bin"  # a detour that stays inside
    (tmp_path / "sub" / "e.gltf").write_text(json.dumps(doc))
    assert load(tmp_path / "sub" / "e.gltf").num_triangles == 1


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_mtl_texture_and_mtllib_escapes(tmp_path: Path, kind: str) -> None:
    model, outside = tmp_path / "model", tmp_path / "outside"
    model.mkdir(), outside.mkdir()
    obj.write(_mesh(), model / "m.obj")
    shutil.move(model / "texture_kd.png", outside / "texture_kd.png")
    ref = _escapes(model, outside / "texture_kd.png")[kind]
    mtl = (model / "m.mtl").read_text().replace("map_Kd texture_kd.png", f"map_Kd {ref}")
    (model / "m.mtl").write_text(mtl)
    with pytest.raises(InputFileError, match=r"m\.mtl: line \d+: path '.*' (leads outside|is an "
                                             r"absolute path).*--allow-outside-paths\)$"):
        obj.read(model / "m.obj")
    assert obj.read(model / "m.obj", limits=ALLOW).materials[0].kd.shape == (4, 4, 3)
    # the library itself outside, named by mtllib
    shutil.move(model / "m.mtl", outside / "m.mtl")
    shutil.copy(outside / "texture_kd.png", outside / "texture_kd_copy.png")
    (outside / "m.mtl").write_text(mtl.replace(f"map_Kd {ref}", "map_Kd texture_kd_copy.png"))
    text = (model / "m.obj").read_text().replace("mtllib m.mtl", "mtllib ../outside/m.mtl")
    (model / "m.obj").write_text(text)
    with pytest.raises(InputFileError, match=r"m\.obj: line 2: path '\.\./outside/m\.mtl' "
                                             r"leads outside"):
        obj.read(model / "m.obj")
    # allowed: the library's textures resolve against its own folder
    assert obj.read(model / "m.obj", limits=ALLOW).materials[0].kd.shape == (4, 4, 3)


def test_cli_allow_outside_paths(gltf_outside: tuple[Path, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = gltf_outside
    _set_uri(path, "../outside/m.bin")
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "leads outside the model's folder" in err
    assert "Traceback" not in err
    assert main(["info", str(path), "--allow-outside-paths"]) == 0
    out = capsys.readouterr().out
    assert "  triangles   1\n" in out, out


def test_config_key_allows_outside_paths(gltf_outside: tuple[Path, Path]) -> None:
    from difflod.config import load_config
    from difflod.io.limits import limits_from
    from difflod.models import open_model

    path, _ = gltf_outside
    _set_uri(path, "../outside/m.bin")
    with pytest.raises(InputFileError, match="leads outside"):
        open_model(path, limits=limits_from(load_config()))
    config = load_config(None, {"allow_outside_paths": True})
    assert open_model(path, limits=limits_from(config)).num_triangles == 1
