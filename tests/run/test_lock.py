"""One run per output folder: a second process is refused at once, with a clear
message and without writing; a SIGKILLed holder blocks nobody."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from difflod.cli import main
from difflod.errors import OutputInUseError
from difflod.run.lock import LOCK_NAME, output_lock

HOLD = """
import sys, time
from difflod.run.lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(folder: Path) -> subprocess.Popen:
    """A real process that holds `folder`'s lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_and_a_killed_holder_blocks_nobody(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        cfg = tmp_path / "cfg.json"
        cfg.write_text(json.dumps({
            "ref_mesh": "asset:sphere?triangles=300&texture_res=8",
            "base_mesh": "asset:sphere?triangles=60&texture_res=8", "iter": 1,
            "train_res": 16, "texture_res": [8, 8], "batch": 1, "eval_views": 1,
            "eval_res": 16, "backend": "cpu", "device": "cpu", "out_dir": "run"}))
        rc = main(["train", "--config", str(cfg), "--out-root", str(tmp_path), "--quiet"])
        assert rc == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(
            f"difflod: error: {out}: another difflod run is writing into this folder")
        # refused before writing anything
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
        with pytest.raises(OutputInUseError, match="wait for it to finish, or choose another"), \
                output_lock(out):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # the kernel released the dead holder's lock: taken at once, no stale-lock cleanup
    with output_lock(out) as folder:
        assert folder == out


def test_stale_temporary_files_are_removed_under_the_lock(tmp_path: Path) -> None:
    (tmp_path / "mesh").mkdir()
    stale = [tmp_path / ".mesh.k2j4_x9a.tmp.glb", tmp_path / "mesh" / ".texture_kd.abcdefgh.tmp.png",
             tmp_path / ".checkpoint.0123abcd.tmp.pt"]
    kept = [tmp_path / "mesh.glb", tmp_path / ".hidden.tmp.txt", tmp_path / "notes.tmp.png",
            tmp_path / ".mesh.short.tmp.glb"]
    for p in stale + kept:
        p.write_bytes(b"x")
    with output_lock(tmp_path):
        assert [p for p in stale if p.exists()] == []
        assert all(p.exists() for p in kept)
