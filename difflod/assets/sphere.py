"""The "sphere" asset: a lat-long UV sphere of radius 0.95 with a color pattern.

It doubles as the low-poly base mesh (`make("sphere", triangles=500)`): rows
of equal latitude, columns of equal longitude, twice as many columns as rows,
so the quads near the equator are square.
"""

from __future__ import annotations

import math

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import lathe, lathe_size, to_i, to_t
from difflod.mesh import Material, Mesh

RADIUS = 0.95


def sphere_arrays(triangles: int) -> dict[str, np.ndarray]:
    """Numpy buffers (see `_build.lathe`) of a unit sphere of about `triangles` triangles."""
    rows, around = lathe_size(triangles, aspect=2.0)
    theta = np.linspace(0.0, math.pi, rows + 1)
    r, y = np.sin(theta), -np.cos(theta)
    r[0] = r[-1] = 0.0
    return lathe(r, y, around)


def sphere_material(rng: np.random.Generator, res: int) -> Material:
    """A rainbow of hue around the sphere, latitude stripes and soft noise."""
    u = (np.arange(res) + 0.5) / res
    v = (np.arange(res) + 0.5) / res
    noise = _tex.value_noise(rng, res, res, 4, 4, octaves=4)
    hue = u[None, :] + 0.15 * (noise - 0.5)
    stripes = 0.5 + 0.5 * np.cos(2.0 * math.pi * 8.0 * v)[:, None]
    sat = 0.55 + 0.35 * stripes
    val = 0.55 + 0.4 * noise
    kd = _tex.srgb_to_linear(_tex.hsv_to_rgb(hue, np.broadcast_to(sat, hue.shape), val))
    return Material(name="sphere", kd=_tex.to_tex(kd), ks=_tex.const_tex(0.0, 0.6, 0.0))


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "sphere" asset (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])
    g = sphere_arrays(triangles)
    return Mesh(v_pos=to_t(g["pos"] * RADIUS), t_pos_idx=to_i(g["tri"]),
                v_tex=to_t(g["uv"]), t_tex_idx=to_i(g["tri_uv"]),
                materials=(sphere_material(rng, texture_res),))

