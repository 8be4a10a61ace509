"""A fresh UV atlas for a decimated mesh (xatlas).

QEM collapses do not carry UVs through, so the base mesh gets new charts,
packed for a square texture of a given side with a few texels of padding
between charts (bilinear filtering at chart borders then stays inside).
"""

from __future__ import annotations

import numpy as np

__all__ = ["uv_atlas"]


def uv_atlas(v_pos: np.ndarray, t_pos_idx: np.ndarray, texture_res: int,
             padding: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Parametrize a mesh with xatlas, packed for a `texture_res` square atlas.

    Returns:
        (UVs `[T,2]` float32 in [0,1] (glTF convention), UV indices `[F,3]` int64
        aligned with t_pos_idx).
    """
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(v_pos, dtype=np.float32),
                   np.ascontiguousarray(t_pos_idx, dtype=np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_res)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    _vmap, uv_idx, uvs = atlas[0]
    return np.ascontiguousarray(uvs, dtype=np.float32), np.asarray(uv_idx, dtype=np.int64)
