"""The command line: one clear line and exit 2 on bad input; info describes models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from difflod.cli import main


def test_info_on_asset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "asset:multi_material?triangles=2000"]) == 0
    out = capsys.readouterr().out
    assert "triangles" in out and "materials   3" in out


def test_info_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "nope.obj")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.obj" in err and "no such model file" in err


def test_unknown_asset_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "asset:teapot"]) == 2
    assert "teapot" in capsys.readouterr().err
    assert main(["info", "asset:sphere?polys=3"]) == 2
    assert "unknown asset option 'polys'" in capsys.readouterr().err


def test_train_bad_config_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"ref_mesh": "asset:sphere", "base_mesh": "asset:sphere",
                               "itre": 3}))
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'itre'" in err and "valid keys" in err


def test_train_bad_override_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--ref_mesh", "asset:sphere", "--base_mesh", "asset:sphere",
                 "--batch", "zero"]) == 2
    assert "'batch' must be an integer" in capsys.readouterr().err


def test_train_missing_reference_names_it(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--ref_mesh", str(tmp_path / "data/spot/spot.obj"),
                 "--base_mesh", "asset:sphere", "--out-root", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "spot.obj" in err and "ref_mesh" in err


def test_usage_error_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "difflod", "eval"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2
    assert "error" in proc.stderr and "Traceback" not in proc.stderr


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_eval_table_keeps_same_named_candidates_apart(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from difflod.assets import make
    from difflod.io import save

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        save(make("sphere", triangles=200, texture_res=16), tmp_path / sub / "mesh.glb")
    assert main(["eval", "asset:sphere?triangles=200&texture_res=16",
                 str(tmp_path / "a/mesh.glb"), str(tmp_path / "b/mesh.glb"),
                 "--views", "1", "--res", "16", "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "a/mesh.glb") in out and str(tmp_path / "b/mesh.glb") in out


def test_baseline_then_eval_with_report(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ref = "asset:sphere?triangles=1200&texture_res=32"
    out = tmp_path / "qem.glb"
    assert main(["baseline", ref, "--triangles", "200", "--texture-res", "64", "-o",
                 str(out)]) == 0
    assert out.is_file()
    assert main(["eval", ref, str(out), "--views", "2", "--res", "32", "--backend", "cpu",
                 "-o", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev/metrics.json").read_text())
    cand = metrics["candidates"]["qem.glb"]
    assert cand["triangles"] <= 200 and cand["psnr"]["mean"] > 20.0
    assert cand["file_bytes"] == out.stat().st_size
    assert (tmp_path / "ev/report/report.html").is_file()
    assert "qem.glb" in capsys.readouterr().out
