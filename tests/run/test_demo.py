"""`difflod demo`: the README's main command, shortened to two iterations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from difflod.cli import main


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["demo", "--iter", "2", "--out-root", str(tmp_path), "--quiet",
               "--backend", "cpu", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    line = re.search(r"initial guess ([\d.]+) dB -> difflod ([\d.]+) dB \(([+-][\d.]+) dB\); "
                     r"QEM \+ texture bake ([\d.]+) dB", out)
    assert line, out
    run = tmp_path / "demo"
    metrics = json.loads((run / "metrics.json").read_text())
    cands = metrics["candidates"]
    assert set(cands) == {"initial", "qem_bake", "difflod"}
    before, after, gain, bake = (float(g) for g in line.groups())
    assert before == pytest.approx(cands["initial"]["psnr"]["mean"], abs=0.01)
    assert after == pytest.approx(cands["difflod"]["psnr"]["mean"], abs=0.01)
    assert gain == pytest.approx(after - before, abs=0.02)
    assert bake == pytest.approx(cands["qem_bake"]["psnr"]["mean"], abs=0.01)
    assert cands["difflod"]["triangles"] <= 400
    for name in ("mesh.glb", "qem_bake.glb", "mesh/mesh.obj", "report/report.html",
                 "img_000000.png", "img_000002.png"):  # first and final state
        assert (run / name).exists(), name
