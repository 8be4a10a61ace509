"""One run per output folder: a lock held while a command writes into it.

`output_lock(out_dir)` creates the folder if needed and takes an exclusive
lock on `out_dir/.difflod.lock` for the duration of the block. A second run
aimed at the same folder does not wait: it stops at once with an
`OutputInUseError` naming the folder, before it has written anything there.

The lock is the `filelock` package's `FileLock`, which on Linux and macOS is
`flock(2)` on the lock file: the kernel drops it when the holding process
dies, however it dies (SIGKILL included), so a killed run never blocks the
next one, and `--resume` takes the folder over at once. The lock file itself
(empty, hidden) stays in the folder; it means nothing unless a live process
holds a lock on it. Once the lock is held, temporary files that killed
writers left in the folder are deleted (io.atomic.remove_stale_temps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from difflod.errors import OutputFileError, OutputInUseError
from difflod.io.atomic import remove_stale_temps

__all__ = ["LOCK_NAME", "output_lock"]

LOCK_NAME = ".difflod.lock"


def _cause(e: OSError) -> str:
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


@contextlib.contextmanager
def output_lock(out_dir: str | Path) -> Iterator[Path]:
    """Hold `out_dir`'s lock for the block; yield the folder (created if needed).

    Raises:
        OutputInUseError: another live process holds the lock.
        OutputFileError: the folder or its lock file cannot be created
            (read-only file system, no permission, full disk).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputFileError(out, _cause(e)) from e
    path = out / LOCK_NAME
    lock = FileLock(path, timeout=0, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        raise OutputInUseError(
            f"{out}: another difflod run is writing into this folder (it holds {path}); "
            f"wait for it to finish, or choose another output folder") from None
    except OSError as e:
        raise OutputFileError(path, _cause(e)) from e
    try:
        remove_stale_temps(out)
        yield out
    finally:
        lock.release()
