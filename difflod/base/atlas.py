"""A UV atlas for a mesh, made by xatlas in a child process.

Why a child process: xatlas's thread pool can hang for ever when an atlas is
destroyed. Its destructor wakes each worker thread without holding the
worker's lock, so a worker that is just about to wait misses the wake-up and
the join never returns. Seen here: `.ci/run` stopped inside
`xatlas::Destroy` (`TaskScheduler::~TaskScheduler`, `std::thread::join`)
while the machine's two cores were busy. The child computes the atlas,
writes it to its stdout and leaves with `os._exit`, so no xatlas destructor
ever runs; the parent bounds the wait and turns a failure into one clear
error. Starting the child (Python, numpy and xatlas, not difflod) costs about
0.2 s, a small part of a base mesh's QEM, atlas and bake.

Run as a script (by path, `python -P atlas.py`), the module reads the mesh
from stdin and writes the atlas to stdout, both as `.npz` bytes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import numpy as np

__all__ = ["ATLAS_TIMEOUT_S", "uv_atlas"]

#: the longest a child may take: only a hang comes near it
ATLAS_TIMEOUT_S = 900.0


def uv_atlas(v_pos: np.ndarray, t_pos_idx: np.ndarray, texture_res: int,
             padding: int = 4, timeout: float = ATLAS_TIMEOUT_S
             ) -> tuple[np.ndarray, np.ndarray]:
    """Parametrize a mesh with xatlas, packed for a `texture_res` square atlas.

    Returns:
        (UVs `[T,2]` float32 in [0,1] (glTF convention), UV indices `[F,3]` int64
        aligned with t_pos_idx).
    Raises:
        DiffLodError: the child failed (its last error line is in the message)
            or ran past `timeout` seconds (it is killed).
    """
    from difflod.errors import DiffLodError  # here: the child must not import difflod

    request = io.BytesIO()
    np.savez(request, v_pos=np.ascontiguousarray(v_pos, dtype=np.float32),
             t_pos_idx=np.ascontiguousarray(t_pos_idx, dtype=np.uint32),
             options=np.array([int(texture_res), int(padding)], dtype=np.int64))
    cmd = [sys.executable, "-P", os.path.abspath(__file__)]
    what = f"a {len(t_pos_idx)}-triangle mesh"
    try:
        done = subprocess.run(cmd, input=request.getvalue(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DiffLodError(f"xatlas did not finish the atlas of {what} in {timeout:g} s"
                           ) from None
    except OSError as e:
        raise DiffLodError(f"could not start xatlas's process ({sys.executable}): {e}") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {done.returncode}"
        raise DiffLodError(f"xatlas failed on {what}: {why}")
    try:
        with np.load(io.BytesIO(done.stdout)) as out:
            return (np.ascontiguousarray(out["uvs"], dtype=np.float32),
                    np.asarray(out["uv_idx"], dtype=np.int64))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DiffLodError(f"xatlas's process returned no atlas for {what} ({e})") from None


def _serve() -> None:
    """The child: the atlas of the mesh on stdin, to stdout; then leave at once."""
    # the reply keeps stdout to itself: anything the C++ library prints goes to stderr
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    import xatlas

    with np.load(io.BytesIO(sys.stdin.buffer.read())) as req:
        v_pos, t_pos_idx = req["v_pos"], req["t_pos_idx"]
        texture_res, padding = (int(x) for x in req["options"])
    atlas = xatlas.Atlas()
    atlas.add_mesh(v_pos, t_pos_idx)
    pack = xatlas.PackOptions()
    pack.resolution = texture_res
    pack.padding = padding
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    _vmap, uv_idx, uvs = atlas[0]
    reply = io.BytesIO()
    np.savez(reply, uvs=np.asarray(uvs, dtype=np.float32),
             uv_idx=np.asarray(uv_idx, dtype=np.int64))
    with os.fdopen(reply_fd, "wb") as out:
        out.write(reply.getvalue())
    os._exit(0)  # skips xatlas's destructor (see the module docstring)


if __name__ == "__main__":
    _serve()
