"""Atomic file writes: a file appears complete under its name, or not at all.

Everything difflod writes goes to a temporary file in the destination's own
folder (same file system, so the final `os.replace` is atomic) and is renamed
only once fully written and flushed. On any exception the temporary file is
removed and the destination is left as it was.

- `atomic_path(path)`: context manager yielding a temporary path (same suffix,
  so libraries that pick a format by suffix still work); renamed on success.
- `atomic_write_bytes(path, data)`, `atomic_write_text(path, text)`.
- `atomic_paths(paths)`: several files that belong together (an OBJ, its MTL
  and textures): all are written to temporary names first and renamed only
  when every one of them succeeded, so a failure leaves no new file at all.

Permissions: a finished file gets the mode an ordinary `open(path, "w")`
would give it (0666 less the process umask: 0644 by default), or keeps the
mode of the file it replaces, not the 0600 of a private temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["atomic_path", "atomic_paths", "atomic_write_bytes", "atomic_write_text"]


def _temp_name(path: Path) -> Path:
    """Create (empty) and return a unique temporary file beside `path`."""
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                dir=path.parent)
    os.close(fd)
    return Path(name)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (threads may run)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    """Mode for the file published at `target`: the replaced file's, else 0666 & ~umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _fsync(path: Path) -> None:
    # Make the bytes durable before the rename publishes them.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` on success.

    The parent folder is created if needed. The temporary file exists (empty)
    when yielded and keeps `path`'s suffix. If the body raises, the temporary
    file is removed and the exception propagates; `path` is untouched.
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path per destination; rename them all on success.

    The renames happen only after the body returned without error, in the
    order given (put the file that "commits" the set, e.g. the .obj that names
    the others, last). On error every temporary file is removed.
    """
    targets = [Path(p) for p in paths]
    if len({t.resolve() for t in targets}) != len(targets):
        raise ValueError(f"atomic_paths: paths must be distinct, got {[str(t) for t in targets]}")
    temps: list[Path] = []
    try:
        for t in targets:
            t.parent.mkdir(parents=True, exist_ok=True)
            temps.append(_temp_name(t))
        yield tuple(temps)
        for tmp, t in zip(temps, targets):
            _fsync(tmp)
            os.chmod(tmp, _final_mode(t))
        for tmp, t in zip(temps, targets):
            os.replace(tmp, t)
    finally:
        for tmp in temps:
            _remove(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically, encoded with `encoding`, newlines kept as given."""
    atomic_write_bytes(path, text.encode(encoding))
