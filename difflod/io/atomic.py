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

Failures: an `OSError` while writing (a full disk, a read-only folder, no
permission, a quota) becomes one `OutputFileError` naming the destination and
the cause ("out/x/mesh.glb: no space left on device"), after the temporary
files were removed. A process killed outright (SIGKILL, power loss) cannot
clean up: its temporary files (hidden, `.NAME.XXXXXXXX.tmp.SUFFIX`) stay
behind, never under a real name; `remove_stale_temps(folder)` deletes them,
and the run orchestrators call it once they hold the folder's lock.

Permissions: a finished file gets the mode an ordinary `open(path, "w")`
would give it (0666 less the process umask: 0644 by default), or keeps the
mode of the file it replaces, not the 0600 of a private temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from difflod.errors import OutputFileError

__all__ = ["atomic_path", "atomic_paths", "atomic_write_bytes", "atomic_write_text",
           "is_temp_name", "remove_stale_temps"]

# the names _temp_name makes: "." + stem + "." + mkstemp's 8 random characters
# (lower-case letters, digits, underscore) + ".tmp" + the destination's suffix
_TEMP_NAME = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$")
# fsync errors that only say "this file system cannot sync": the data is written
_NO_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


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
    """Make the bytes durable before the rename publishes them; a failure to
    store them (ENOSPC, EIO, EDQUOT surface here on some file systems) raises."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _NO_SYNC:
            raise
    finally:
        os.close(fd)


def _cause(e: OSError) -> str:
    """'no space left on device' from OSError(ENOSPC, 'No space left on device')."""
    text = e.strerror or (os.strerror(e.errno) if e.errno else str(e)) or type(e).__name__
    return text[:1].lower() + text[1:]


def _blame(e: OSError, temps: list[Path], targets: list[Path]) -> Path:
    """The destination an OSError concerns: the one whose temporary file it names,
    the destination itself, else the first (its folder is the likely cause)."""
    for name in (e.filename, e.filename2):
        if name is None:
            continue
        named = Path(os.fsdecode(name))
        for tmp, target in zip(temps, targets):
            if named in (tmp, target):
                return target
    return targets[0]


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
        try:
            for t in targets:
                t.parent.mkdir(parents=True, exist_ok=True)
                temps.append(_temp_name(t))
        except OSError as e:
            raise OutputFileError(targets[len(temps)], _cause(e)) from e
        try:
            yield tuple(temps)
        except OSError as e:  # the writer's own write(), e.g. ENOSPC
            raise OutputFileError(_blame(e, temps, targets), _cause(e)) from e
        try:
            for tmp, t in zip(temps, targets):
                _fsync(tmp)
                os.chmod(tmp, _final_mode(t))
            for tmp, t in zip(temps, targets):
                os.replace(tmp, t)
        except OSError as e:
            raise OutputFileError(_blame(e, temps, targets), _cause(e)) from e
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


def is_temp_name(name: str) -> bool:
    """True for a file name this module gives its temporary files."""
    return _TEMP_NAME.match(name) is not None


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writers left in `folder` (recursively).

    Call it only while no other process writes there (under the folder's lock:
    difflod.run.lock). Returns the paths removed.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.rglob(".*.tmp*")):
        if is_temp_name(path.name) and path.is_file() and not path.is_symlink():
            _remove(path)
            removed.append(path)
    return removed
