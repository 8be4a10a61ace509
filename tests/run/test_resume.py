"""Kill and resume: a SIGKILLed run leaves only complete files, and `--resume`
ends with the very files of an uninterrupted run (CPU: bit for bit).

The reference is one uninterrupted in-process run per command; the killed run
is a real `difflod` process, SIGKILLed as soon as its first checkpoint appears
(so the resume has training left to do); the resume runs in-process. Byte
equality is the tolerance: on the CPU backend every kernel is deterministic
(DESIGN.md, "Determinism"), so the resumed files must equal the reference's.
bench/killresume.py does the same at random moments, 20+ times.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from difflod.cli import main
from difflod.config import load_config
from difflod.errors import DiffLodError
from difflod.models import open_model
from difflod.optimize.trainer import Trainer, prepare_meshes
from difflod.run.simplify import simplify, simplify_config
from difflod.run.train import train

TRAIN = {"ref_mesh": "asset:sphere?triangles=1500&texture_res=32",
         "base_mesh": "asset:sphere?triangles=200&texture_res=32",
         "iter": 6, "batch": 2, "train_res": 32, "texture_res": [32, 32], "save_interval": 2,
         "eval_views": 2, "eval_res": 32, "backend": "cpu", "device": "cpu",
         "random_textures": True, "log_interval": 100, "out_dir": "run"}
SIMPLIFY = {k: v for k, v in TRAIN.items() if k not in ("ref_mesh", "base_mesh", "out_dir",
                                                        "random_textures")}
SIMPLIFY_REF, SIMPLIFY_BUDGET = "asset:sphere?triangles=1500&texture_res=32", 200
# files whose bytes depend only on the seed (history.json and metrics.json hold timings)
TIMED = {"history.json", "metrics.json", "report/report.html", "report/curves.png"}


def _same_files(a: Path, b: Path) -> list[str]:
    """Names of the files that differ between two run folders (timings aside; the
    config's out_dir, which simplify sets to the folder's path, aside)."""
    def files(d: Path) -> set[str]:
        return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}

    def config(d: Path) -> dict:
        return {k: v for k, v in json.loads((d / "config.json").read_text()).items()
                if k != "out_dir"}

    names = files(a) | files(b)
    diff = [] if config(a) == config(b) else ["config.json"]
    diff += sorted(n for n in names - TIMED - {"config.json"}
                  if not ((a / n).is_file() and (b / n).is_file()
                          and (a / n).read_bytes() == (b / n).read_bytes()))
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (a, b))
    if [{k: v for k, v in h.items() if k != "ms"} for h in ha] != \
            [{k: v for k, v in h.items() if k != "ms"} for h in hb]:
        diff.append("history.json")
    return diff


def _kill_at_first_checkpoint(cmd: list[str], folder: Path, timeout: float = 600) -> float:
    """Run `cmd` as a real process; SIGKILL it as soon as folder/checkpoint.pt exists.
    Returns the seconds it ran."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not (folder / "checkpoint.pt").exists():
            assert proc.poll() is None, f"the run ended before its first checkpoint: " \
                                        f"{proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() - t0 < timeout, "no checkpoint within the timeout"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_ref")
    train(load_config(None, TRAIN), out_root=root, quiet=True)
    return root / "run"


@pytest.mark.slow
def test_train_killed_and_resumed_ends_as_uninterrupted(
        train_reference: Path, tmp_path: Path, check_outputs) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TRAIN))
    out = tmp_path / "run"
    _kill_at_first_checkpoint([sys.executable, "-m", "difflod", "train", "--config", str(cfg),
                               "--out-root", str(tmp_path), "--quiet"], out)
    incomplete, _ = check_outputs(out)
    assert incomplete == []
    saved = torch.load(out / "checkpoint.pt", weights_only=False)["history"]
    assert 0 < len(saved) < TRAIN["iter"]
    result = train(load_config(None, TRAIN), out_root=tmp_path, resume=True, quiet=True)
    # it continued: the first steps are the killed run's, timings included (a rerun
    # from the start would give the same losses but other times)
    assert result.history[:len(saved)] == saved
    assert len(result.history) == TRAIN["iter"]
    assert _same_files(train_reference, out) == []
    assert not (out / "checkpoint.pt").exists()  # finished: no checkpoint kept
    # resuming the finished run does nothing: no file is written again
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = train(load_config(None, TRAIN), out_root=tmp_path, resume=True, quiet=True)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    assert again.metrics == json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_resume_without_checkpoint_starts_over_and_runs_are_deterministic(
        train_reference: Path, tmp_path: Path) -> None:
    """A run killed before its first checkpoint leaves config.json alone; --resume
    then runs from the first iteration, and two runs give identical bytes."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(train_reference / "config.json", out / "config.json")
    train(load_config(None, TRAIN), out_root=tmp_path, resume=True, quiet=True)
    assert _same_files(train_reference, out) == []


@pytest.mark.slow
def test_simplify_killed_and_resumed_ends_as_uninterrupted(
        tmp_path: Path, check_outputs) -> None:
    cfg = simplify_config(None, SIMPLIFY)  # as the CLI makes it from the same keys
    reference = tmp_path / "ref"
    simplify(SIMPLIFY_REF, SIMPLIFY_BUDGET, reference, config=cfg, quiet=True)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(SIMPLIFY))
    out = tmp_path / "killed"
    args = ["simplify", SIMPLIFY_REF, "--triangles", str(SIMPLIFY_BUDGET), "-o", str(out),
            "--config", str(cfg_file), "--quiet"]
    _kill_at_first_checkpoint([sys.executable, "-m", "difflod", *args], out)
    incomplete, _ = check_outputs(out)
    assert incomplete == []
    # the base mesh stage runs again: QEM, xatlas and the bake give the same base,
    # or the checkpoint's digest of it would refuse the resume
    saved = torch.load(out / "checkpoint.pt", weights_only=False)["history"]
    assert main([*args, "--resume"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert 0 < len(saved) < SIMPLIFY["iter"] and history[:len(saved)] == saved
    assert _same_files(reference, out) == []
    assert check_outputs(out) == ([], [])


def _trainer(tmp_path: Path, base: str) -> Trainer:
    """A Trainer of the TRAIN config whose base mesh is opened from `base` (the
    config's base_mesh stays TRAIN's: as when the file behind it has changed)."""
    cfg = load_config(None, TRAIN)
    ref_n, base_n, _ = prepare_meshes(open_model(cfg.ref_mesh), open_model(base), cfg,
                                      torch.device("cpu"))
    return Trainer(cfg, ref_n, base_n, tmp_path, quiet=True)


def test_checkpoint_of_another_base_mesh_is_refused(tmp_path: Path) -> None:
    first = _trainer(tmp_path, TRAIN["base_mesh"])
    first.step()
    ckpt = first.save_checkpoint()
    # same topology and parameter shapes, other base textures: loading would "work"
    other = _trainer(tmp_path, "asset:sphere?triangles=200&texture_res=16")
    with pytest.raises(DiffLodError, match=r"checkpoint\.pt: the checkpoint was made from "
                                           r"another base mesh"):
        other.load_checkpoint(ckpt)
    same = _trainer(tmp_path, TRAIN["base_mesh"])
    same.load_checkpoint(ckpt)
    assert same.iteration == 1


def test_truncated_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    tr = _trainer(tmp_path, TRAIN["base_mesh"])
    data = tr.save_checkpoint().read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DiffLodError, match=r"checkpoint\.pt: cannot resume from this checkpoint"):
        tr.load_checkpoint(tmp_path / "checkpoint.pt")


def test_cuda_runs_agree_within_the_documented_tolerance(cuda: torch.device,
                                                         tmp_path: Path) -> None:
    """DESIGN.md, "Determinism": the GPU's atomic gradient sums round in thread
    order, and Adam's step of a value with a near-zero gradient may go either way
    by up to its learning rate: after 3 steps all but 1% of values agree to 1e-4,
    every value to 3 learning rates, the losses to 1e-4 relative."""
    cfg = load_config(None, {**TRAIN, "iter": 3, "backend": "cuda", "device": str(cuda),
                             "keep_checkpoint": True})
    for name in ("a", "b"):
        train(cfg, out_root=tmp_path / name, quiet=True, evaluate=False)
    a, b = (torch.load(tmp_path / n / "run" / "checkpoint.pt", map_location="cpu",
                       weights_only=False) for n in ("a", "b"))
    lr = max(cfg.lr_positions, cfg.lr_textures)
    for key, value in a["params"].items():
        diff = (value - b["params"][key]).abs()
        assert float((diff > 1e-4).float().mean()) < 0.01, key
        assert float(diff.max()) <= 3 * lr, key
    assert [h["loss"] for h in a["history"]] == pytest.approx(
        [h["loss"] for h in b["history"]], rel=1e-4)
