"""Read limits and path settings from the command line and the config, end to end.

Every command that opens models (info, eval, baseline, simplify, train) takes
--max-vertices ... --allow-outside-paths; a limit set there refuses a file
the default reads, with one line naming the limit and exit 2, before any
output exists. The config keys of the same names do the same for runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from difflod.cli import main
from difflod.config import load_config
from difflod.errors import ConfigError
from difflod.io import save
from difflod.models import open_model

QUAD = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 4 3\n"  # 4 vertices, 2 triangles
REFUSED = ("the faces make 2 triangles, more than the limit of 1 "
           "(raise it with max_triangles / --max-triangles)")


def _quad(tmp_path: Path) -> Path:
    path = tmp_path / "quad.obj"
    path.write_text(QUAD)
    return path


def _one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", ["info", "eval", "baseline", "simplify", "train"])
def test_every_command_takes_the_limit_flags(tmp_path: Path, command: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    model, out = _quad(tmp_path), tmp_path / "out"
    argv = {"info": ["info", str(model)],
            "eval": ["eval", str(model), str(model), "-o", str(out)],
            "baseline": ["baseline", str(model), "--triangles", "4", "-o", str(out / "b.obj")],
            "simplify": ["simplify", str(model), "--triangles", "4", "-o", str(out)],
            "train": ["train", "--ref_mesh", str(model), "--base_mesh", str(model),
                      "--out-root", str(out)]}[command]
    assert main([*argv, "--max-triangles", "1"]) == 2
    assert REFUSED in _one_error_line(capsys.readouterr().err)
    assert not out.exists()  # nothing written before the model was refused


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--max-vertices", "3", ("the file has 4 vertices, more than the limit of 3 "
                            "(raise it with max_vertices / --max-vertices)")),
    ("--max-file-bytes", "10", ("file has 42 bytes, more than the limit of 10 "
                               "(raise it with max_file_bytes / --max-file-bytes)")),
    ("--max-texture-size", "3", ("texture 'texture_kd.png': the image is 4 x 4 pixels, more "
                                "than the limit of 3 (raise it with max_texture_size / "
                                "--max-texture-size)")),
])
def test_each_flag_refuses_what_the_default_reads(tmp_path: Path, flag: str, value: str,
                                                  message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    if flag == "--max-texture-size":
        model = tmp_path / "t.obj"
        save(open_model("asset:sphere?triangles=20&texture_res=4"), model)
    else:
        model = _quad(tmp_path)
    assert main(["info", str(model)]) == 0
    capsys.readouterr()
    assert main(["info", str(model), flag, value]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_animation_limit_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "walk.glb"
    save(open_model("asset:skinned_cylinder?triangles=40&texture_res=4"), model)
    assert main(["info", str(model)]) == 0
    capsys.readouterr()
    assert main(["info", str(model), "--max-animation-matrices", "5"]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "more than the limit of 5 (raise it with max_animation_matrices / " \
           "--max-animation-matrices)" in err


def test_asset_specs_are_held_to_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "asset:sphere?triangles=5000", "--max-triangles", "1000"]) == 2
    assert ("asks for 5000 triangles, more than the limit of 1000"
            in _one_error_line(capsys.readouterr().err))


def test_config_keys_reach_the_reader(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"max_triangles": 1}))
    out = tmp_path / "out"
    assert main(["simplify", str(_quad(tmp_path)), "--triangles", "4", "-o", str(out),
                 "--config", str(cfg)]) == 2
    assert REFUSED in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(("data", "needle"), [
    ({"max_vertices": 0}, "'max_vertices' must be a positive integer or null"),
    ({"max_texture_size": -4}, "'max_texture_size' must be a positive integer or null"),
    ({"max_file_bytes": 1.5}, "'max_file_bytes' must be integer or null"),
    ({"allow_outside_paths": "yes"}, "'allow_outside_paths' must be true or false"),
])
def test_limit_keys_are_validated(tmp_path: Path, data: dict, needle: str) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_config(cfg)


def test_simplify_of_a_model_without_triangles(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "points.obj"
    model.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    out = tmp_path / "out"
    assert main(["simplify", str(model), "--triangles", "10", "-o", str(out)]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "points.obj: the model has no triangles; there is nothing to simplify" in err
    assert not out.exists()


def test_hostile_file_in_a_process(tmp_path: Path) -> None:
    """A decompression bomb given to `difflod simplify`: exit 2, one line, no folder."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 65536, 65536, 8, 6,
                                                             0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    model = tmp_path / "bomb.gltf"
    model.write_text(json.dumps({
        "asset": {"version": "2.0"}, "images": [
            {"uri": "data:image/png;base64," + base64.b64encode(png).decode()}]}))
    save(open_model("asset:sphere?triangles=20&texture_res=4"), tmp_path / "m.gltf")
    doc = json.loads((tmp_path / "m.gltf").read_text())
    doc["images"][0] = {"uri": "data:image/png;base64," + base64.b64encode(png).decode()}
    model.write_text(json.dumps(doc))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "difflod", "simplify", str(model),
                           "--triangles", "10", "-o", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "image 0 is 65536 x 65536 pixels, more than the limit of 16384" in proc.stderr
    assert not out.exists()
