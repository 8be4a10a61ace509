"""`difflod demo`: the README's main command, shortened to a few iterations."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from difflod.cli import main
from difflod.io.image import read_image
from difflod.run.demo import DEMO_SETTINGS, PICTURE_RES, SCALED_KEYS
from difflod.run.simplify import SIMPLIFY_DEFAULTS

ITER = 12
LINE = (r"held-out PSNR, 16 views, {}: QEM \+ texture bake ([\d.]+) dB -> "
        r"difflod ([\d.]+) dB \(([+-][\d.]+) dB\)")


def test_demo_scales_the_simplify_defaults_and_changes_nothing_else() -> None:
    assert set(DEMO_SETTINGS) <= SCALED_KEYS
    assert not {"init_textures", "random_textures", "learning_rate", "loss",
                "laplacian_factor", "relative_laplacian", "lr_decay"} & SCALED_KEYS


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2)))


def test_demo_runs_the_default_path_and_beats_qem_bake(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["demo", "--iter", str(ITER), "--out-root", str(tmp_path), "--quiet",
               "--backend", "cpu", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    line = re.search(LINE.format("difflod's renderer"), out)
    assert line, out
    run = tmp_path / "demo"
    config = json.loads((run / "config.json").read_text())
    for key, value in SIMPLIFY_DEFAULTS.items():  # the defaults users run, but scaled
        if key not in DEMO_SETTINGS:
            assert config[key] == value, key
    assert config["init_textures"] == "base" and not config["random_textures"]
    metrics = json.loads((run / "metrics.json").read_text())
    cands = metrics["candidates"]
    assert set(cands) == {"qem_bake", "difflod"}  # it starts from QEM + bake: no "initial"
    bake, after, gain = (float(g) for g in line.groups())
    assert bake == pytest.approx(cands["qem_bake"]["psnr"]["mean"], abs=0.01)
    assert after == pytest.approx(cands["difflod"]["psnr"]["mean"], abs=0.01)
    assert gain == pytest.approx(after - bake, abs=0.02)
    assert cands["difflod"]["triangles"] <= 400
    # Starting from the bake, each Adam step moves positions by about 0.002 and
    # texels by about 0.01 towards the reference, so 12 steps gain little: measured
    # with the demo's seed (cpu backend) 24.26 -> 24.43 dB (+0.17), better on 8 of
    # 16 views; the bound is half that gain. A step that moved nothing, or moved
    # away from the reference, fails it.
    assert gain > 0.08
    # the picture: reference | QEM + bake | difflod, from the display camera
    pic = read_image(run / "demo.png").numpy()
    assert pic.shape[:2] == (PICTURE_RES, 3 * PICTURE_RES + 8)
    ref, qem, ours = (pic[:, i * (PICTURE_RES + 4):i * (PICTURE_RES + 4) + PICTURE_RES, :3]
                      for i in range(3))
    assert np.all(pic[:, PICTURE_RES:PICTURE_RES + 4] == 1.0)  # white gaps between tiles
    # the same object from the same camera in every tile (measured after 12 steps:
    # 25.8 dB for QEM + bake, 25.6 dB for difflod on this one view), and training
    # changed the difflod tile
    assert _psnr(ref, qem) > 20.0 and _psnr(ref, ours) > 20.0
    assert float(np.abs(ours - qem).max()) > 0.05
    # three.js (Chromium and the npm package three) must be found under CI, where
    # .ci/run installs them; elsewhere the demo says in one line that it skips them
    skipped = "three.js scores skipped: " in out
    assert not (skipped and os.environ.get("CI") == "true"), out
    if not skipped:
        tj_line = re.search(LINE.format("three.js"), out)
        assert tj_line, out
        tj = json.loads((run / "metrics_threejs.json").read_text())["psnr"]
        assert float(tj_line.group(1)) == pytest.approx(tj["qem_bake"], abs=0.01)
        assert float(tj_line.group(2)) == pytest.approx(tj["difflod"], abs=0.01)
    for name in ("mesh.glb", "qem_bake.glb", "mesh/mesh.obj", "report/report.html",
                 "img_000000.png", f"img_{ITER:06d}.png"):  # first and final state
        assert (run / name).exists(), name
    history = json.loads((run / "history.json").read_text())
    assert len(history) == ITER and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
