"""The "knot" asset: a tube around a (2,3) torus knot, with helical stripes.

The tube frame uses, at each point of the knot curve c(t), the direction from
the torus core circle to c(t), made orthogonal to the tangent: it is never
parallel to the tangent and is periodic, so the frame closes without twist
and the tube is watertight. u runs along the tube, v around it; the texture
holds 8 periods along u so texels stay roughly square.
"""

from __future__ import annotations

import math

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import fit_unit, to_i, to_t, torus_grid
from difflod.mesh import Material, Mesh

P, Q = 2, 3
TUBE = 0.55          # tube radius, in units where the torus radii are 2 and 1
ASPECT = 9.2         # knot length / tube circumference
PERIODS_U = 8


def knot_positions(along: int, around: int) -> np.ndarray:
    """`[along*around, 3]` float64 tube positions, laid out [along, around]."""
    t = np.arange(along) * (2.0 * math.pi / along)
    c = np.stack([(2.0 + np.cos(Q * t)) * np.cos(P * t), (2.0 + np.cos(Q * t)) * np.sin(P * t),
                  -np.sin(Q * t)], axis=1)
    dc = np.stack([-Q * np.sin(Q * t) * np.cos(P * t) - P * (2.0 + np.cos(Q * t)) * np.sin(P * t),
                   -Q * np.sin(Q * t) * np.sin(P * t) + P * (2.0 + np.cos(Q * t)) * np.cos(P * t),
                   -Q * np.cos(Q * t)], axis=1)
    tangent = dc / np.linalg.norm(dc, axis=1, keepdims=True)
    out = c - 2.0 * np.stack([np.cos(P * t), np.sin(P * t), np.zeros_like(t)], axis=1)
    normal = out - (out * tangent).sum(1, keepdims=True) * tangent
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    binormal = np.cross(tangent, normal)
    theta = np.arange(around) * (2.0 * math.pi / around)
    # Sign of the angle chosen so (d/d around) x (d/d along) points outside.
    ring = (np.cos(theta)[None, :, None] * normal[:, None, :]
            + np.sin(theta)[None, :, None] * binormal[:, None, :])
    return (c[:, None, :] + TUBE * ring).reshape(-1, 3)


def knot_material(rng: np.random.Generator, res: int) -> Material:
    """Helical stripes with a hue running along the knot, noise and ridges."""
    v = ((np.arange(res) + 0.5) / res)[:, None]          # rows: around the tube
    u = ((np.arange(res) + 0.5) / res)[None, :]          # columns: along the tube
    noise = _tex.value_noise(rng, res, res, 4, 4 * PERIODS_U, octaves=4)
    phase = 2.0 * math.pi * (PERIODS_U * 2 * u + 2 * v)
    stripe = 0.5 + 0.5 * np.cos(phase)
    band = np.clip((stripe - 0.35) / 0.3, 0.0, 1.0)
    hue = u + 0.1 * (noise - 0.5) + 0.5 * band
    kd = _tex.srgb_to_linear(_tex.hsv_to_rgb(hue, 0.5 + 0.3 * band, 0.5 + 0.4 * noise))
    ks = np.stack([np.broadcast_to(0.2 * (1.0 - stripe), noise.shape),
                   0.25 + 0.5 * (1.0 - band) * noise, 0.8 * band], axis=-1)
    normal = _tex.normal_from_height(stripe + 0.3 * noise, strength=res / 128.0)
    return Material(name="knot", kd=_tex.to_tex(kd), ks=_tex.to_tex(ks),
                    normal=_tex.to_tex(normal))


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "knot" asset (see the module docstring)."""
    rng = np.random.default_rng([seed, 3])
    around = max(3, round(math.sqrt(triangles / (2.0 * ASPECT))))
    along = max(8, round(triangles / (2.0 * around)))
    tri, uv, tri_uv, _ = torus_grid(along, around)
    pos = fit_unit(knot_positions(along, around))
    return Mesh(v_pos=to_t(pos), t_pos_idx=to_i(tri), v_tex=to_t(uv), t_tex_idx=to_i(tri_uv),
                materials=(knot_material(rng, texture_res),))
