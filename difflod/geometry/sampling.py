"""Area-weighted uniform point samples on a triangle mesh (numpy).

Used by the texture bake (base/bake.py: closest reference points) and by the
Chamfer distance (evaluate/metrics.py). Reproducible: every draw comes from
the numpy Generator the caller passes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_surface"]


def sample_surface(v_pos: np.ndarray, t_pos_idx: np.ndarray, count: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted uniform samples on a triangle mesh.

    Args:
        v_pos: `[V,3]` float positions; t_pos_idx: `[F,3]` int indices.
        count: number of samples; rng: numpy generator (the seed lives there).
    Returns:
        (points `[count,3]` float64, triangle ids `[count]` int64,
         barycentrics `[count,3]` float64 summing to 1).
    """
    v = np.asarray(v_pos, dtype=np.float64)
    f = np.asarray(t_pos_idx, dtype=np.int64)
    if f.shape[0] == 0:
        raise ValueError("sample_surface: the mesh has no triangles")
    p0, p1, p2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(p1 - p0, p2 - p0), axis=1)
    total = area.sum()
    prob = area / total if total > 0 else np.full(len(area), 1.0 / len(area))
    tri = rng.choice(len(f), size=count, p=prob)
    r1 = np.sqrt(rng.random(count))
    r2 = rng.random(count)
    bary = np.stack([1.0 - r1, r1 * (1.0 - r2), r1 * r2], axis=1)
    pts = bary[:, 0:1] * p0[tri] + bary[:, 1:2] * p1[tri] + bary[:, 2:3] * p2[tri]
    return pts, tri.astype(np.int64), bary
