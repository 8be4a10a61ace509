"""QEM decimation of a triangle mesh's positions (fast-simplification).

`weld` first merges the positions that UV seams split, so that QEM sees one
closed surface instead of open borders along every seam; `decimate` then
collapses edges by quadric error down to the triangle budget. Both work on
numpy position and index buffers only: UVs and normals are rebuilt after.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decimate", "weld"]


def weld(v_pos: np.ndarray, t_pos_idx: np.ndarray,
         tolerance: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Merge coincident positions and drop the triangles that collapse.

    glTF files (and UV-mapped procedural meshes) split vertices along UV
    seams; QEM would treat those seams as open borders. Positions closer than
    `tolerance` times the bounding-box diagonal are merged.

    Returns:
        (`[V',3]` float32 positions, `[F',3]` int64 indices).
    """
    if len(v_pos) == 0:
        return v_pos.astype(np.float32), t_pos_idx.astype(np.int64)
    diag = float(np.linalg.norm(v_pos.max(0) - v_pos.min(0))) or 1.0
    keys = np.round(v_pos / (tolerance * diag)).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    idx = inverse.reshape(-1)[t_pos_idx]
    keep = (idx[:, 0] != idx[:, 1]) & (idx[:, 1] != idx[:, 2]) & (idx[:, 0] != idx[:, 2])
    return (np.ascontiguousarray(v_pos[first], dtype=np.float32),
            np.ascontiguousarray(idx[keep], dtype=np.int64))


def decimate(v_pos: np.ndarray, t_pos_idx: np.ndarray,
             triangles: int) -> tuple[np.ndarray, np.ndarray]:
    """QEM-decimate a triangle mesh to about `triangles` faces.

    Args:
        v_pos: `[V,3]` float positions; t_pos_idx: `[F,3]` int indices.
    Returns:
        (`[V',3]` float32 positions, `[F',3]` int64 indices); the input,
        unchanged, when it already has no more than `triangles` faces.
    """
    import fast_simplification

    pos, idx = weld(np.asarray(v_pos, dtype=np.float32), np.asarray(t_pos_idx, dtype=np.int64))
    if len(idx) <= triangles:
        return pos, idx
    out_pos, out_idx = fast_simplification.simplify(pos, idx, target_count=triangles)
    return (np.ascontiguousarray(out_pos, dtype=np.float32),
            np.ascontiguousarray(out_idx, dtype=np.int64))
