"""Tests of bench/fidelity.py's scoring: which held-out metrics it reads, the
PSNR/SSIM/FLIP table, and the three.js gain against issue #17's goal."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from difflod.evaluate.evaluate import evaluate
from difflod.models import open_model

_PATH = Path(__file__).resolve().parents[1] / "bench" / "fidelity.py"


@pytest.fixture(scope="module")
def fidelity():
    spec = importlib.util.spec_from_file_location("bench_fidelity", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(asset: str, tj_qem: float, tj_dl: float) -> dict:
    """A summarized row as main() builds it, difflod's own scores 1 dB above three.js's."""
    scores = {"psnr": 0.0, "ssim": 0.5, "flip": 0.25}
    row = {"asset": asset, "ref_triangles": 20000, "budget": 200, "triangles": 200,
           "seconds": 1.0,
           "difflod_renderer": {"in_memory": tj_dl + 1, "glb": tj_dl + 1, "obj": tj_dl + 1,
                                "qem_bake": tj_qem + 1},
           "difflod_metrics": {"qem_bake": {**scores, "psnr": tj_qem + 1},
                               "glb": {**scores, "psnr": tj_dl + 1, "ssim": 0.75}},
           "threejs": {"qem_bake": tj_qem, "difflod": tj_dl},
           "threejs_metrics": {"qem_bake": {**scores, "psnr": tj_qem},
                               "difflod": {**scores, "psnr": tj_dl, "flip": 0.125}}}
    return row


def test_metrics_reads_psnr_ssim_flip_of_a_real_evaluation(fidelity):
    # the reference scored against itself: SSIM 1 and FLIP 0 exactly (the same
    # pictures); a perturbed copy scores below on SSIM and above on FLIP
    reference = open_model("asset:sphere?triangles=200&texture_res=16")
    shrunk = dataclasses.replace(reference, v_pos=reference.v_pos * 0.8)
    scores = evaluate(reference, {"same": reference, "shrunk": shrunk}, views=2, res=32,
                      with_flip=True, chamfer_samples=100)
    got = fidelity._metrics(scores, ("same", "shrunk"))
    assert set(got["same"]) == {"psnr", "ssim", "flip", "outline"}
    assert got["same"]["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert got["same"]["flip"] == pytest.approx(0.0, abs=1e-6)
    assert got["same"]["outline"] == 0.0  # no error anywhere
    assert got["shrunk"]["ssim"] < 0.99
    assert got["shrunk"]["flip"] > 0.01
    assert got["shrunk"]["psnr"] < got["same"]["psnr"]
    # a copy shrunk by a fifth: some of its error is at the outline, not all
    assert 0.1 < got["shrunk"]["outline"] < 1.0


def test_metrics_table_gives_both_renderers_and_the_gain(fidelity):
    row = fidelity.summarize(_row("knot", 20.0, 24.5))
    lines = fidelity.metrics_table([row]).splitlines()
    assert len(lines) == 4  # head, rule, difflod, three.js
    difflod_line = [c.strip() for c in lines[2].strip("|").split("|")]
    threejs_line = [c.strip() for c in lines[3].strip("|").split("|")]
    assert difflod_line == ["knot", "200", "difflod", "21.00", "25.50", "+4.50",
                            "0.5000", "0.7500", "0.2500", "0.2500"]
    assert threejs_line == ["knot", "200", "three.js", "20.00", "24.50", "+4.50",
                            "0.5000", "0.5000", "0.2500", "0.1250"]


@pytest.mark.parametrize(("gains", "met"), [
    ((5.0, 3.0), True),     # mean 4.0, each >= 2
    ((7.0, 1.9), False),    # mean 4.45, but one run under +2 dB
    ((3.9, 3.9), False),    # every run over +2 dB, mean under +4 dB
])
def test_goal_needs_the_mean_and_every_run(fidelity, gains, met):
    rows = [fidelity.summarize(_row(f"a{i}", 20.0, 20.0 + g)) for i, g in enumerate(gains)]
    summary = fidelity.goal(rows)
    assert summary["runs"] == len(gains)
    assert summary["mean_gain_threejs_db"] == pytest.approx(sum(gains) / len(gains))
    assert summary["min_gain_threejs_db"] == pytest.approx(min(gains))
    assert summary["met"] is met


def test_goal_is_none_without_threejs_scores(fidelity):
    row = _row("knot", 20.0, 25.0)
    del row["threejs"], row["threejs_metrics"]
    assert fidelity.goal([fidelity.summarize(row)]) is None


def _report(out: Path, *more: str) -> subprocess.CompletedProcess:
    """bench/fidelity.py --stage report on OUT, in a fresh interpreter."""
    return subprocess.run([sys.executable, str(_PATH), "--stage", "report", "--out", str(out),
                           *more], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(_PATH.parents[1])})


def test_report_stage_reads_gathered_scores_and_runs_nothing(tmp_path):
    # two runs' scores.json as the other stages leave them; the report must
    # summarize exactly these (gains +5 and +1 dB: mean +3, goal not met)
    for asset, gain in (("knot", 5.0), ("spiky", 1.0)):
        row = _row(asset, 20.0, 20.0 + gain)
        folder = tmp_path / f"{asset}_200"
        folder.mkdir()
        (folder / "scores.json").write_text(json.dumps(row))
    (tmp_path / "not_a_run").mkdir()
    done = _report(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [r["asset"] for r in report["rows"]] == ["knot", "spiky"]
    assert [r["gain_threejs_db"] for r in report["rows"]] == pytest.approx([5.0, 1.0])
    assert report["goal"]["mean_gain_threejs_db"] == pytest.approx(3.0)
    assert report["goal"]["met"] is False


def test_report_stage_names_a_missing_folder(tmp_path):
    done = _report(tmp_path / "absent")
    assert done.returncode == 2
    assert "--out" in done.stderr and "absent" in done.stderr and "no such folder" in done.stderr


def test_a_bad_set_is_one_line_before_any_run(tmp_path):
    # learning rates must be positive (difflod/config.py): the bench says so
    # in one usage line, exit 2, and leaves OUT untouched
    done = subprocess.run([sys.executable, str(_PATH), "--assets", "knot", "--out",
                           str(tmp_path / "out"), "--set", "learning_rate=[0,0.01]"],
                          check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(_PATH.parents[1])})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "'learning_rate' must be a positive number" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists()
