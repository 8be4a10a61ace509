"""The "multi_material" asset: a mushroom made of three materials.

A closed surface of revolution in three bands: the stem (material 0, fibrous
noise texture), the gills under the cap (material 1, constant 1x1 factors) and
the cap (material 2, red with pale Voronoi spots and a normal map). Each band
maps its own full [0,1] v range, so UVs are split (not positions) where the
bands meet; Mesh.t_mat gives each triangle's material.
"""

from __future__ import annotations

import math

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import Profile, fit_unit, lathe, lathe_rows, lathe_size, to_i, to_t
from difflod.mesh import Material, Mesh


def polyline(points: np.ndarray) -> tuple[Profile, float]:
    """A profile following `[K,2]` (r, y) points at constant speed, and its length."""
    seg = np.hypot(*np.diff(points, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seg)])

    def profile(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = s * arc[-1]
        return np.interp(a, arc, points[:, 0]), np.interp(a, arc, points[:, 1])

    return profile, float(arc[-1])


def mushroom_bands() -> list[tuple[Profile, float]]:
    """Stem, gills and cap profiles, bottom to top."""
    stem = np.array([[0.0, -0.9], [0.26, -0.9], [0.3, -0.86], [0.27, -0.6], [0.22, -0.25],
                     [0.2, 0.05]])
    gills = np.array([[0.2, 0.05], [0.5, 0.09], [0.85, 0.13]])
    a = np.linspace(0.0, 0.5 * math.pi, 48)
    cap = np.concatenate([[[0.85, 0.13], [0.93, 0.2]],
                          np.stack([0.93 * np.cos(a[1:]), 0.2 + 0.6 * np.sin(a[1:])], 1)])
    cap[-1, 0] = 0.0
    return [polyline(stem), polyline(gills), polyline(cap)]


def materials(rng: np.random.Generator, res: int) -> tuple[Material, Material, Material]:
    """(stem, gills, cap) materials."""
    fib = _tex.value_noise(rng, res, res, 2, 32, octaves=3)      # streaks along v
    stem_rgb = np.stack([0.85 + 0.1 * fib, 0.8 + 0.1 * fib, 0.68 + 0.1 * fib], -1)
    stem = Material(name="stem", kd=_tex.to_tex(_tex.srgb_to_linear(stem_rgb)),
                    ks=_tex.to_tex(np.stack([np.zeros_like(fib), 0.7 + 0.2 * fib,
                                             np.zeros_like(fib)], -1)))
    gills = Material(name="gills", kd=_tex.const_tex(0.18, 0.1, 0.06),
                     ks=_tex.const_tex(0.3, 0.9, 0.0))
    f1, _, cell = _tex.cells(rng, res, res, 4, 10)
    size = rng.uniform(0.15, 0.35, 40)[cell]
    spot = np.clip((size - f1) / 0.05, 0.0, 1.0)
    noise = _tex.value_noise(rng, res, res, 4, 8, octaves=4)
    red = np.stack([0.75 + 0.15 * noise, 0.08 + 0.06 * noise, 0.05 + 0.03 * noise], -1)
    cream = np.array([0.95, 0.92, 0.82])
    cap_rgb = red * (1.0 - spot[..., None]) + cream * spot[..., None]
    cap = Material(name="cap", kd=_tex.to_tex(_tex.srgb_to_linear(cap_rgb)),
                   ks=_tex.to_tex(np.stack([np.zeros_like(spot), 0.35 + 0.4 * spot,
                                            np.zeros_like(spot)], -1)),
                   normal=_tex.to_tex(_tex.normal_from_height(spot + 0.2 * noise,
                                                              strength=res / 256.0)))
    return stem, gills, cap


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "multi_material" asset (see the module docstring)."""
    rng = np.random.default_rng([seed, 6])
    bands = mushroom_bands()
    length = sum(b[1] for b in bands)
    intervals, around = lathe_size(triangles, aspect=2.0 * math.pi * 0.5 / length)
    r, y, s, band = lathe_rows(bands, max(intervals, 2 * len(bands)))
    boundary = np.zeros(len(r), dtype=bool)
    boundary[1:-1] = band[1:] != band[:-1]
    v_below = 1.0 - s
    v_above = np.where(boundary, 1.0, v_below)
    g = lathe(r, y, around, band=band, band_v=np.stack([v_below, v_above], 1))
    return Mesh(v_pos=to_t(fit_unit(g["pos"])), t_pos_idx=to_i(g["tri"]), v_tex=to_t(g["uv"]),
                t_tex_idx=to_i(g["tri_uv"]), t_mat=to_i(g["tri_band"]),
                materials=materials(rng, texture_res))
