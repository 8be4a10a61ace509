"""CPU rasterization with numba: visibility by a z-buffer over bands of rows, and
the barycentrics of rasterize written in the same pass.

Hand-written because no maintained library offers a CPU rasterizer with
homogeneous (w <= 0 safe) coverage, a crack-free fill rule and depth peeling
that agrees bit for bit with a torch reference. The math is exactly that of
torch_ref.py (same float64 operations in the same order, fastmath off), so the
triangle ids match the oracle. The kernels are in cpu_zbuffer.py; this module
is their numpy entry points and the backend class.

Layout: (1) per-triangle setup in parallel (edge and depth planes, fill rule,
the row-span bounds of each edge, a pixel box that is tight up to a 1e-6 pixel
margin); (2) triangles binned into bands of `BAND` rows by their box (the
whole screen when some w <= 0), one image per parallel task; (3) a parallel loop
over (image, band): each band walks its triangles in id order and, per row,
takes the x span from the edges' bounds (no branches) before testing pixels
exactly; then, for rasterize (rasterize_numpy), it writes every pixel of the
band's ids, rast and rast_db while the band is in cache, building the planes
of each winning triangle once per band.

Measured on the 2-core development machine (bench/render.py --backend cpu
--triangles 20000 --batch 8: 8 views of 512^2, the whole rasterize op with
rast_db; median of 7; the previous code, with a second pass for the
barycentrics, in the same session, runs interleaved; load average 1.2-1.6
from other jobs): 124-140 ms -> 65-76 ms per batch. One thread, CPU time of
rasterize: 190-204 ms -> 109-123 ms, of which setup ~14, binning ~3, the
z-buffer ~56, barycentrics and writing rast and rast_db (67 MB) ~25, and
first-touch page faults of the fresh outputs most of the rest. The two
threads keep both cores busy (about half the one-thread time at load ~1.0:
rasterize_numpy 46-49 ms). The triangle ids did not change (bit
for bit, 20k and 200k triangles). rasterize_numpy's outputs come from a
BufferPool (cpu_buffers.py), so a call whose previous results were dropped
writes into memory already faulted in: same bench, interleaved runs, load
~1-1.6: 65-80 ms -> 48-56 ms per batch of 8 views.
"""

from __future__ import annotations

import numpy as np
import torch

from difflod.render.backends import cpu_zbuffer as kern
from difflod.render.backends.cpu_buffers import BufferPool

__all__ = [
    "CpuBackend",
    "barycentrics_numpy",
    "planes_numpy",
    "rasterize_numpy",
    "visibility_numpy",
]


_OUTPUTS = BufferPool()  # rast / rast_db / ids outputs, reused once the caller drops them


def _bary_outputs(n_b: int, h: int, w: int, with_db: bool, dtype) -> tuple[np.ndarray, np.ndarray]:
    """rast `[B,H,W,4]` and rast_db (or a `[1,1,1,4]` placeholder the kernels ignore), from
    _OUTPUTS; the kernels write every pixel, so the buffers need no zeroing."""
    rast = _OUTPUTS.take((n_b, h, w, 4), dtype)
    if not with_db:
        return rast, np.empty((1, 1, 1, 4), dtype)
    return rast, _OUTPUTS.take((n_b, h, w, 4), dtype)


def _visibility_setup(clip: np.ndarray, tris: np.ndarray, h: int, w: int):
    """(rec, incl, box, starts, items) of kern.raster for clip `[B,V,4]` float32, tris `[F,3]` int32.

    Big arrays are allocated here with numpy, not inside the kernels: numpy asks
    for huge pages, which makes first-touch page faults cheaper.
    """
    n_b, n_f = clip.shape[0], tris.shape[0]
    rec = np.empty((n_b, n_f, kern.REC_LEN))
    incl = np.empty((n_b, n_f, 3), np.bool_)
    box = np.empty((n_b, n_f, 4), np.int32)
    kern.setup(clip, tris, h, w, rec, incl, box)
    starts, items = kern.bin_bands(box, h)
    return rec, incl, box, starts, items


def visibility_numpy(
    clip: np.ndarray, tris: np.ndarray, h: int, w: int, depth_floor: np.ndarray | None = None
) -> np.ndarray:
    """Numpy entry point: clip `[B,V,4]` float32, tris `[F,3]` int32 → `[B,H,W]` int32 ids + 1."""
    n_b, n_f = clip.shape[0], tris.shape[0]
    if n_f == 0:
        return np.zeros((n_b, h, w), np.int32)
    use_floor = depth_floor is not None
    floor = depth_floor if use_floor else np.zeros((1, 1, 1), np.float32)
    unused = np.zeros((1, 1, 1, 4), np.float32)
    ids = np.empty((n_b, h, w), np.int32)
    vis = _visibility_setup(clip, tris, h, w)
    kern.raster(*vis, h, w, floor, use_floor, clip, tris, False, False, ids, unused, unused)
    return ids


def rasterize_numpy(
    clip32: np.ndarray, tris: np.ndarray, clip: np.ndarray, h: int, w: int, with_db: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Visibility and barycentrics in one pass: (ids, rast, rast_db or None).

    Args:
        clip32: `[B,V,4]` float32, the positions the visibility tests (as visibility_numpy).
        tris: `[F,3]` int32, F > 0.
        clip: `[B,V,4]` float32 or float64, the positions of the barycentrics.
        with_db: also compute rast_db.
    Returns:
        ids `[B,H,W]` int32, the same as visibility_numpy's; rast, rast_db
        `[B,H,W,4]` in clip's dtype, as difflod.render.rasterize.raster_from_ids
        builds them from ids.
    """
    n_b = clip32.shape[0]
    rast, rast_db = _bary_outputs(n_b, h, w, with_db, clip.dtype)
    floor = np.zeros((1, 1, 1), np.float32)
    ids = _OUTPUTS.take((n_b, h, w), np.int32)
    vis = _visibility_setup(clip32, tris, h, w)
    kern.raster(*vis, h, w, floor, False, clip, tris, True, with_db, ids, rast, rast_db)
    return ids, rast, rast_db if with_db else None


def planes_numpy(clip: np.ndarray, tris: np.ndarray, pairs: np.ndarray, n_f: int) -> np.ndarray:
    """The planes `[T,15]` float64 of pairs `[T]` int64 = b*F + f: per pair (E1, E2,
    E0+E1+E2, sum z_i E_i, sum w_i E_i) with E_i = V_j x V_k, V = (x, y, w)."""
    table = np.empty((pairs.shape[0], 15))
    kern.planes(clip, tris, pairs, n_f, table)
    return table


def barycentrics_numpy(
    ids: np.ndarray, slot: np.ndarray, table: np.ndarray, n_f: int, with_db: bool, dtype
) -> tuple[np.ndarray, np.ndarray | None]:
    """(rast, rast_db or None) `[B,H,W,4]` of dtype from ids `[B,H,W]` int32 and the planes
    table `[T,15]` of planes_numpy, slot `[B*F]` int64 giving each pair's row."""
    n_b, h, w = ids.shape
    rast, rast_db = _bary_outputs(n_b, h, w, with_db, dtype)
    kern.pixels(ids, slot, table, n_f, with_db, rast, rast_db)
    return rast, rast_db if with_db else None


class CpuBackend:
    """numba z-buffer on the CPU; serves CPU tensors only."""

    name = "cpu"

    def supports(self, device: torch.device) -> str | None:
        """None for CPU tensors, else the reason."""
        if device.type != "cpu":
            return "the numba cpu backend needs CPU tensors (use 'cuda' or 'torch')"
        return None

    def visibility(
        self,
        clip: torch.Tensor,
        tris: torch.Tensor,
        h: int,
        w: int,
        depth_floor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """See difflod.render.backends.Backend.visibility."""
        c = np.ascontiguousarray(clip.detach().numpy(), dtype=np.float32)
        t = np.ascontiguousarray(tris.numpy(), dtype=np.int32)
        fl = None
        if depth_floor is not None:
            fl = np.ascontiguousarray(depth_floor.numpy(), dtype=np.float32)
        return torch.from_numpy(visibility_numpy(c, t, h, w, fl))
