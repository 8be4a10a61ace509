"""Deterministic procedural models for the demo, the tests and the benchmarks.

difflod may not ship third-party models, so it builds its own:

    mesh = make("spiky", triangles=30000, seed=0, texture_res=512)

Each asset is a pure function of (triangles, seed, texture_res): the same
arguments give bit-identical tensors on the same machine. Triangle counts land
within about 10% of the request from ~1k to 4M triangles (tiny requests get
the smallest sensible shape); models fit in [-1,1]^3; closed shapes are
watertight (UV seams split only the UV indices) and wound counter-clockwise
seen from outside; textures hold linear values (DESIGN.md). Normals are left
to the renderer (v_nrm is None).

Assets (one module each):
    sphere            lat-long UV sphere with a color pattern; the base mesh
    spiky             sphere displaced by seeded spikes and noise, PBR textures
    knot              (2,3) torus-knot tube, UVs along/around the tube
    shrub             alpha-masked leaf quads around stems (MASK, cutoff 0.5)
    skinned_cylinder  cylinder along +Y with 4 joints and a bending animation
    multi_material    a mushroom with 3 materials (stem, gills, cap)
    beacon            a dark metal column with glowing strips and windows
                      (an emissive map peaking above 1)
    vcolor            a sphere colored by its vertex colors only (white 1x1 kd)
    glass             a tinted see-through globe (BLEND, alpha 0.3) around an
                      opaque coloured core: two materials
"""

from __future__ import annotations

import importlib
import math
import numbers

from difflod.errors import DiffLodError
from difflod.mesh import Mesh

__all__ = ["ASSETS", "MAX_TRIANGLES", "MIN_TRIANGLES", "demo_pair", "make"]

ASSETS: tuple[str, ...] = ("sphere", "spiky", "knot", "shrub", "skinned_cylinder",
                           "multi_material", "beacon", "vcolor", "glass")
MIN_TRIANGLES = 12
MAX_TRIANGLES = 4_000_000
_MAX_TEXTURE_RES = 8192


def make(name: str, triangles: int = 20000, seed: int = 0, texture_res: int = 512) -> Mesh:
    """Build the procedural asset `name`.

    Args:
        name: one of ASSETS.
        triangles: requested triangle count, in [MIN_TRIANGLES, MAX_TRIANGLES];
            the result is within ~10% of it from ~1k triangles up.
        seed: non-negative int; all random choices derive from it.
        texture_res: side of the square textures, in [4, 8192].

    Returns:
        A validated Mesh (float32 positions `[V,3]`, int64 `[F,3]` indices, UVs,
        materials with linear textures `[H,W,C]` float32).

    Raises:
        DiffLodError: unknown name or an argument out of range.
    """
    if name not in ASSETS:
        raise DiffLodError(f"unknown asset {name!r}; valid names: {', '.join(ASSETS)}")
    _check_int("triangles", triangles, MIN_TRIANGLES, MAX_TRIANGLES)
    _check_int("seed", seed, 0, 2**63 - 1)
    _check_int("texture_res", texture_res, 4, _MAX_TEXTURE_RES)
    module = importlib.import_module(f"difflod.assets.{name}")
    mesh: Mesh = module.build(int(triangles), int(seed), int(texture_res))
    return mesh.validate()


def demo_pair(seed: int = 0) -> tuple[Mesh, Mesh]:
    """The demo's (reference, base): a 30k-triangle "spiky" and a ~400-triangle
    "sphere" scaled to the reference's median radius, with UVs and a 256^2
    texture (training replaces its material)."""
    reference = make("spiky", triangles=30000, seed=seed, texture_res=1024)
    base = make("sphere", triangles=400, seed=seed, texture_res=256)
    radius = float(reference.v_pos.norm(dim=1).median())
    scale = radius / float(base.v_pos.norm(dim=1).max())
    return reference, base.replace(v_pos=base.v_pos * scale)


def _check_int(field: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not lo <= int(value) <= hi:
        hint = f"an integer in [{lo}, {hi}]"
        if isinstance(value, float) and math.isfinite(value):
            hint += " (not a float)"
        raise DiffLodError(f"asset {field} must be {hint}, got {value!r}")


