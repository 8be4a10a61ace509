"""Atomic writes: the destination is complete or untouched, never half-written."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from difflod.errors import OutputFileError
from difflod.io.atomic import (
    atomic_path,
    atomic_paths,
    atomic_write_bytes,
    atomic_write_text,
    is_temp_name,
)


def test_write_bytes_and_text(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"\x00\x01abc")
    assert target.read_bytes() == b"\x00\x01abc"
    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]


def test_atomic_path_keeps_suffix_and_renames(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
        assert not target.exists()
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
    assert list(tmp_path.iterdir()) == [target]


def test_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("new, half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_group_all_or_nothing(tmp_path: Path) -> None:
    names = [tmp_path / "a.png", tmp_path / "b.mtl", tmp_path / "c.obj"]
    with pytest.raises(OutputFileError, match=r"a\.png: disk full$"), \
            atomic_paths(names) as temps:
        temps[0].write_text("a")
        temps[1].write_text("b")
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []
    with atomic_paths(names) as temps:
        for t, n in zip(temps, names):
            t.write_text(n.name)
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["a.png", "b.mtl", "c.obj"]


def test_group_rejects_duplicates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct"), \
            atomic_paths([tmp_path / "a", tmp_path / "a"]):
        pass


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_new_files_get_the_umasks_mode(tmp_path: Path, umask: int) -> None:
    """A published file has the mode open(path, "w") would give it, not mkstemp's 0600."""
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_paths([tmp_path / "b.obj", tmp_path / "b.mtl"]) as temps:
            for t in temps:
                t.write_text("x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert stat.S_IMODE(plain.stat().st_mode) == want  # the reference: an ordinary write
    for name in ("a.json", "b.obj", "b.mtl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_replacing_a_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "secret.glb"
    target.write_bytes(b"old")
    target.chmod(0o600)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_saved_model_files_are_readable_by_others(tmp_path: Path) -> None:
    import difflod
    from difflod.assets import make

    old = os.umask(0o022)
    try:
        mesh = make("sphere", 200, 0, 8)
        difflod.save(mesh, tmp_path / "m.glb")
        difflod.save(mesh, tmp_path / "obj" / "m.obj")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 4  # glb, obj, mtl, a texture
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name


# ---- failures: one OutputFileError naming the destination, nothing left behind ----
def test_a_failing_write_names_the_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "mesh.glb"
    target.write_bytes(b"old")
    with pytest.raises(OutputFileError, match=r"mesh\.glb: no space left on device$"), \
            atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.glb"]


def test_a_group_names_the_member_that_failed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    with pytest.raises(OutputFileError, match=r"b\.png: disk quota exceeded$"), \
            atomic_paths([a, b]) as (_ta, tb):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(tb))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("code", "fails"), [(errno.ENOSPC, True), (errno.EIO, True),
                                             (errno.EINVAL, False)])
def test_fsync_errors_fail_unless_the_file_system_cannot_sync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, fails: bool) -> None:
    """ENOSPC / EIO reported at fsync (NFS, delayed allocation) mean the bytes are not
    stored; EINVAL only means the file system has no fsync (the bytes are written)."""
    def fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "history.json"
    if fails:
        with pytest.raises(OutputFileError, match=rf"history\.json: {os.strerror(code).lower()}"):
            atomic_write_text(target, "[]")
        assert list(tmp_path.iterdir()) == []
    else:
        atomic_write_text(target, "[]")
        assert target.read_text() == "[]"


def test_temp_names_are_recognized(tmp_path: Path) -> None:
    names = []
    for target in (tmp_path / "mesh.glb", tmp_path / "texture_kd.png", tmp_path / "noext"):
        with atomic_path(target) as tmp:
            names.append(tmp.name)
    assert all(is_temp_name(n) for n in names), names
    assert not any(is_temp_name(n) for n in ("mesh.glb", ".mesh.glb", "a.tmp.png", ".a.b.tmp"))
