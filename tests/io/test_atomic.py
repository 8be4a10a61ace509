"""Atomic writes: the destination is complete or untouched, never half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from difflod.io.atomic import atomic_path, atomic_paths, atomic_write_bytes, atomic_write_text


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
    with pytest.raises(OSError), atomic_paths(names) as temps:
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
