"""`difflod baseline`: the usual pipeline alone (QEM decimation + UV atlas + texture bake).

The stages, in order: open the model (difflod.models) → base mesh
(base.baseline.baseline) → export (one model file, by its suffix).
"""

from __future__ import annotations

from pathlib import Path

from difflod.errors import DiffLodError
from difflod.io.limits import ReadLimits
from difflod.mesh import Mesh

__all__ = ["make_baseline"]


def make_baseline(reference: str, triangles: int, out: str | Path, *, texture_res: int = 1024,
                  seed: int = 0, limits: ReadLimits | None = None) -> Mesh:
    """Decimate `reference` to `triangles`, bake its textures, write `out`; return the mesh.

    Args:
        reference: a model file or an `asset:NAME?...` spec.
        triangles: the triangle budget (>= 4).
        out: the output model file (.obj, .gltf, .glb); its folder is created.
        texture_res: side of the square baked textures; seed: the bake's sampling seed.
        limits: what the model file may declare (default `ReadLimits()`).
    Raises:
        DiffLodError: a budget below 4, or a model that cannot be opened or written.
    """
    from difflod.base.baseline import baseline
    from difflod.io import save
    from difflod.models import open_model

    if triangles < 4:
        raise DiffLodError(f"--triangles must be >= 4, got {triangles}")
    result = baseline(open_model(reference, limits=limits), triangles, texture_res=texture_res, seed=seed)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(result, path)
    return result
