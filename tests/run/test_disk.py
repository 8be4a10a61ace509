"""A full disk or a read-only folder: one line naming the file and the cause,
exit 2, no partial or temporary file left.

The disks are real where this process may mount (root, as CI runs): a 64 KiB
tmpfs and a read-only bind mount. Elsewhere the same tests run on a fault
injected into io.atomic's fsync (ENOSPC for any file over 64 KiB, as the tmpfs
gives) and on a chmod 0555 folder (which a non-root process cannot write).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from difflod.cli import main

SMALL = 64 * 1024
CONFIG = {"ref_mesh": "asset:sphere?triangles=1500&texture_res=32",
          "base_mesh": "asset:sphere?triangles=200&texture_res=32",
          "iter": 2, "batch": 1, "train_res": 32, "texture_res": [64, 64], "save_interval": 1,
          "eval_views": 1, "eval_res": 32, "backend": "cpu", "device": "cpu",
          "out_dir": "run"}


def _mount(*args: str) -> bool:
    try:
        return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0
    except FileNotFoundError:  # no mount command
        return False


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on a 64 KiB file system (tmpfs, or the fault injection)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if _mount("-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(disk)):
        try:
            yield disk
        finally:
            subprocess.run(["umount", str(disk)], check=True)
        return
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_size > SMALL:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield disk


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot write to (read-only bind mount, or mode 0555)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's file\n")
    if _mount("--bind", str(folder), str(folder)):
        try:
            assert _mount("-o", "remount,ro,bind", str(folder))
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def _train(root: Path, tmp_path: Path) -> int:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(CONFIG))
    return main(["train", "--config", str(cfg), "--out-root", str(root), "--quiet"])


def test_full_disk_names_the_file_and_leaves_no_partial_file(
        full_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        check_outputs) -> None:
    assert _train(full_disk, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    prefix = f"difflod: error: {full_disk / 'run'}/"
    assert err.startswith(prefix) and err.endswith(": no space left on device\n"), err
    failed = full_disk / "run" / err[len(prefix):-len(": no space left on device\n")]
    assert not failed.exists()  # the file it could not finish is not there at all
    incomplete, temps = check_outputs(full_disk / "run")
    assert incomplete == [] and temps == []
    assert (full_disk / "run" / "config.json").is_file()  # what fitted was written whole


def test_read_only_folder_is_one_line(read_only: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(read_only, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"difflod: error: {read_only / 'run'}: ")
    assert err.endswith(("read-only file system\n", "permission denied\n")), err
    assert sorted(p.name for p in read_only.iterdir()) == ["notes.txt"]
