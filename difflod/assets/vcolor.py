"""The "vcolor" asset: a sphere whose whole appearance is in its vertex colors.

A lat-long sphere (the "sphere" asset's geometry, radius 0.95) with a white
1x1 base color and `Mesh.v_color` = a smooth function of position: per
channel 0.5 + 0.4 sin(3 d_c . p + phase_c), the directions d_c and phases
drawn from the seed, values in linear RGB with alpha 1. It stands for scanned
and CAD models, which often carry no texture but colored vertices.
"""

from __future__ import annotations

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import to_i, to_t
from difflod.assets.sphere import RADIUS, sphere_arrays
from difflod.mesh import Material, Mesh

FREQUENCY = 3.0


def color_field(pos: np.ndarray, seed: int) -> np.ndarray:
    """`[N,4]` float64 linear RGBA of the asset at positions `pos` `[N,3]`."""
    rng = np.random.default_rng([seed, 7])
    dirs = rng.normal(size=(3, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=3)
    rgb = 0.5 + 0.4 * np.sin(FREQUENCY * np.asarray(pos, np.float64) @ dirs.T + phase)
    return np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "vcolor" asset (see the module docstring); texture_res is unused."""
    g = sphere_arrays(triangles)
    pos = g["pos"] * RADIUS
    white = Material(name="vcolor", kd=_tex.const_tex(1.0, 1.0, 1.0),
                     ks=_tex.const_tex(0.0, 0.6, 0.0))
    return Mesh(v_pos=to_t(pos), t_pos_idx=to_i(g["tri"]), v_tex=to_t(g["uv"]),
                t_tex_idx=to_i(g["tri_uv"]), materials=(white,),
                v_color=to_t(color_field(pos, seed)))
