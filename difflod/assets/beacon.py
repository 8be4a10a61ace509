"""The "beacon" asset: a rounded dark metal column with glowing panels.

A closed surface of revolution (a superellipse profile: a cylinder with
rounded top and bottom) in dark, slightly rough metal, with an emissive map:
three cyan light strips around it and, between them, two rows of eight
window panels, each lit or dark and warm-tinted by the seed. Emission peaks
above 1 (up to 2.4 in linear radiance), as lamps in game assets do, so the
files need KHR_materials_emissive_strength (glTF) or `map_Ke -mm` (MTL).

UVs: u around +Y, v along the profile by arc length (v = 0 at the top pole),
as every lathe asset (_build.lathe). Panel edges are soft over about one
texel, so the map is smooth at any `texture_res`.
"""

from __future__ import annotations

import math

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import lathe, lathe_size, to_i, to_t
from difflod.mesh import Material, Mesh

RADIUS, HALF_HEIGHT = 0.55, 0.95
EXPONENT = 0.35                       # of the superellipse profile; 1 = an ellipse
STRIPS_V = (0.3, 0.5, 0.7)            # centres of the light strips along v
STRIP_HALF = 0.012
STRIP_RGB = (0.25, 1.4, 2.0)
WINDOWS_U = 8
WINDOW_ROWS_V = (0.4, 0.6)            # centres of the window rows along v
WINDOW_HALF = (0.035, 0.04)           # half size in (u, v)
LIT = 0.7                             # chance that a window is lit


def beacon_profile(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(r, y) `[rows+1]` from the bottom pole to the top pole."""
    theta = np.linspace(0.0, math.pi, rows + 1)
    s, c = np.sin(theta), -np.cos(theta)
    r = RADIUS * np.abs(s) ** EXPONENT
    y = HALF_HEIGHT * np.sign(c) * np.abs(c) ** EXPONENT
    r[0] = r[-1] = 0.0
    return r, y


def _box(d: np.ndarray, half: float, texel: float) -> np.ndarray:
    """1 inside |d| < half, 0 outside, a linear edge one texel wide."""
    return np.clip((half - np.abs(d)) / texel + 0.5, 0.0, 1.0)


def beacon_material(rng: np.random.Generator, res: int) -> Material:
    """Dark brushed metal with an emissive map of strips and windows."""
    u = ((np.arange(res) + 0.5) / res)[None, :]
    v = ((np.arange(res) + 0.5) / res)[:, None]
    texel = 1.0 / res
    noise = _tex.value_noise(rng, res, res, 16, 2, octaves=3)        # streaks around
    kd = _tex.srgb_to_linear(np.stack([0.3 + 0.08 * noise, 0.31 + 0.08 * noise,
                                       0.35 + 0.08 * noise], -1))
    ks = np.stack([np.zeros_like(noise), 0.35 + 0.25 * noise, np.full_like(noise, 0.5)], -1)

    emissive = np.zeros((res, res, 3))
    strip = sum(_box(v - c, STRIP_HALF, texel) for c in STRIPS_V)
    emissive += np.broadcast_to(strip, (res, res))[..., None] * np.array(STRIP_RGB)
    lit = rng.random((len(WINDOW_ROWS_V), WINDOWS_U)) < LIT
    warmth = rng.uniform(0.0, 1.0, (len(WINDOW_ROWS_V), WINDOWS_U))
    gain = rng.uniform(1.2, 2.4, (len(WINDOW_ROWS_V), WINDOWS_U))
    for i, cv in enumerate(WINDOW_ROWS_V):
        for j in range(WINDOWS_U):
            if not lit[i, j]:
                continue
            cu = (j + 0.5) / WINDOWS_U
            du = (u - cu + 0.5) % 1.0 - 0.5                            # periodic in u
            mask = _box(du, WINDOW_HALF[0], texel) * _box(v - cv, WINDOW_HALF[1], texel)
            rgb = gain[i, j] * np.array([1.0, 0.55 + 0.3 * warmth[i, j],
                                         0.15 + 0.35 * warmth[i, j]])
            emissive += mask[..., None] * rgb
    return Material(name="beacon", kd=_tex.to_tex(kd), ks=_tex.to_tex(ks),
                    emissive=_tex.to_tex(emissive))


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "beacon" asset (see the module docstring)."""
    rng = np.random.default_rng([seed, 7])
    rows, around = lathe_size(triangles, aspect=2.0 * math.pi * RADIUS / (2.0 * HALF_HEIGHT))
    r, y = beacon_profile(max(rows, 4))
    g = lathe(r, y, around)
    return Mesh(v_pos=to_t(g["pos"]), t_pos_idx=to_i(g["tri"]), v_tex=to_t(g["uv"]),
                t_tex_idx=to_i(g["tri_uv"]), materials=(beacon_material(rng, texture_res),))
