"""The "glass" asset: a tinted glass globe around an opaque coloured core.

Two closed surfaces of revolution, each with its own material:

- material 0, "core" (OPAQUE): a rounded box-like body (a superellipse
  profile, radius CORE_RADIUS) in warm, saturated bands with seeded noise,
  so its colour is nothing like the glass's;
- material 1, "glass" (BLEND): a sphere of radius SHELL_RADIUS around it, a
  constant pale cyan tint with alpha GLASS_ALPHA and a smooth surface, so
  the core shows through it (and through its back side, since difflod and
  glTF's doubleSided draw both).

It is the model of issue #17's "glass stays see-through": a simplified copy
must keep the shell transparent and the core opaque. Triangles are shared
out half and half; each part maps its own full [0,1] UV range (t_mat says
which texture a triangle reads).
"""

from __future__ import annotations

import math

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import lathe, lathe_size, to_i, to_t
from difflod.assets.beacon import beacon_profile
from difflod.mesh import Material, Mesh

SHELL_RADIUS = 0.95
CORE_RADIUS = 0.5                     # the core's radius relative to the beacon's profile
GLASS_RGBA = (0.7, 0.9, 1.0, 0.3)     # linear tint and alpha of the shell
GLASS_KS = (0.0, 0.2, 0.0)            # smooth dielectric
BANDS = 6                             # colour bands along the core's height


def core_material(rng: np.random.Generator, res: int) -> Material:
    """Warm bands (red, orange, yellow, alternating with green) with noise."""
    v = (np.arange(res) + 0.5) / res
    noise = _tex.value_noise(rng, res, res, 4, 8, octaves=3)
    band = np.floor(v * BANDS).astype(np.int64) % 2
    hue = np.where(band[:, None] == 0, 0.02 + 0.08 * noise, 0.3 + 0.05 * noise)
    sat = np.full_like(hue, 0.85)
    val = 0.65 + 0.3 * noise
    kd = _tex.srgb_to_linear(_tex.hsv_to_rgb(hue, sat, val))
    return Material(name="core", kd=_tex.to_tex(kd), ks=_tex.const_tex(0.0, 0.5, 0.0))


def glass_material() -> Material:
    """The shell's tinted, see-through glass (BLEND, constant)."""
    return Material(name="glass", kd=_tex.const_tex(*GLASS_RGBA), ks=_tex.const_tex(*GLASS_KS),
                    alpha_mode="BLEND", double_sided=True)


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "glass" asset (see the module docstring)."""
    rng = np.random.default_rng([seed, 8])
    half = max(6, triangles // 2)
    rows, around = lathe_size(half, aspect=2.0)
    r, y = beacon_profile(max(rows, 2))
    core = lathe(r * (CORE_RADIUS / r.max()), y * (CORE_RADIUS / np.abs(y).max()), around)
    rows, around = lathe_size(triangles - half, aspect=2.0)
    theta = np.linspace(0.0, math.pi, max(rows, 2) + 1)
    r, y = np.sin(theta) * SHELL_RADIUS, -np.cos(theta) * SHELL_RADIUS
    r[0] = r[-1] = 0.0
    shell = lathe(r, y, around)
    pos = np.concatenate([core["pos"], shell["pos"]])
    tri = np.concatenate([core["tri"], shell["tri"] + len(core["pos"])])
    uv = np.concatenate([core["uv"], shell["uv"]])
    tri_uv = np.concatenate([core["tri_uv"], shell["tri_uv"] + len(core["uv"])])
    t_mat = np.concatenate([np.zeros(len(core["tri"]), np.int64),
                            np.ones(len(shell["tri"]), np.int64)])
    return Mesh(v_pos=to_t(pos), t_pos_idx=to_i(tri), v_tex=to_t(uv), t_tex_idx=to_i(tri_uv),
                t_mat=to_i(t_mat), materials=(core_material(rng, texture_res), glass_material()))
