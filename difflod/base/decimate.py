"""Welding and QEM decimation of a triangle mesh's positions (fast-simplification).

The base-mesh stage decimates the reference with them (base/baseline.py),
and the remesher uses them for its input and its budget (base/remesh.py).
"""

from __future__ import annotations

import numpy as np

from difflod.errors import DiffLodError

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
    # QEM can stop above its target where collapses would fold the surface (a
    # flat model with coincident sides kept 118 of a 100-triangle target): aim
    # lower until the budget holds, a few times at most; where QEM stalls, say so
    target = triangles
    for _ in range(8):
        out_pos, out_idx = fast_simplification.simplify(pos, idx, target_count=target)
        if len(out_idx) <= triangles or target <= 4:
            break
        target = max(4, target - (len(out_idx) - triangles) - 1)
    if len(out_idx) > triangles:
        raise DiffLodError(f"QEM decimation stops at {len(out_idx)} triangles on this model "
                           f"(surfaces that fold onto each other), above the budget of "
                           f"{triangles}; ask for at least {len(out_idx)}")
    return (np.ascontiguousarray(out_pos, dtype=np.float32),
            np.ascontiguousarray(out_idx, dtype=np.int64))
