"""The "spiky" asset: the demo's reference, a sphere with spikes, bumps and PBR textures.

Geometry: the lat-long sphere of `sphere.py` displaced along its radius by
16 seeded spikes (smooth cones of random direction, width and height: the
shape a few hundred triangles can follow) and a sum of random
high-frequency 3D sinusoids (fine ripples: detail that only a normal map can
keep on a light model). Textures: Voronoi-cell colors with
noise (kd), roughness and metallic varying per cell and with noise (ks), and a
fine-grained normal map (cell borders as grooves plus high-frequency noise),
so the simplified model has detail that only textures can keep.
"""

from __future__ import annotations

import math

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import to_i, to_t
from difflod.assets.sphere import sphere_arrays
from difflod.mesh import Material, Mesh

SPIKES = 16
WAVES = 24


def displace(pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Radially displace unit-sphere points `[V,3]` by spikes and bumps (float64)."""
    dirs = rng.normal(size=(SPIKES, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    width = rng.uniform(0.25, 0.5, SPIKES)           # angular radius, radians
    height = rng.uniform(0.15, 0.35, SPIKES) * (0.5 + width / 0.5)
    cos_w = np.cos(width)
    radius = np.ones(pos.shape[0])
    for k in range(SPIKES):                           # loop over spikes, not vertices
        c = pos @ dirs[k]
        hit = np.flatnonzero(c > cos_w[k])             # spikes cover a small cap
        t = (c[hit] - cos_w[k]) / (1.0 - cos_w[k])
        radius[hit] += height[k] * t * t              # cone-like, smooth foot
    wave_dir = rng.normal(size=(WAVES, 3))
    wave_dir /= np.linalg.norm(wave_dir, axis=1, keepdims=True)
    freq = rng.uniform(12.0, 30.0, WAVES)
    phase = rng.uniform(0.0, 2.0 * math.pi, WAVES)
    radius += 0.008 * np.sin((pos @ wave_dir.T) * freq + phase).sum(axis=1)
    return pos * radius[:, None]


def spiky_material(rng: np.random.Generator, res: int) -> Material:
    """Colorful cells, per-cell roughness/metallic and a detailed normal map."""
    f1, f2, cell = _tex.cells(rng, res, res, 6, 12)   # lat-long: twice as wide
    n_cells = 6 * 12
    cell_hue = rng.random(n_cells)
    cell_rough = rng.uniform(0.15, 0.9, n_cells)
    cell_metal = (rng.random(n_cells) < 0.15).astype(np.float64)
    noise = _tex.value_noise(rng, res, res, 8, 16, octaves=5)
    border = np.clip((f2 - f1) / 0.08, 0.0, 1.0)      # 0 on cell borders
    hue = cell_hue[cell] + 0.08 * (noise - 0.5)
    sat = 0.5 + 0.4 * noise
    val = (0.45 + 0.5 * noise) * (0.35 + 0.65 * border)
    kd = _tex.srgb_to_linear(_tex.hsv_to_rgb(hue, sat, val))
    fine = _tex.value_noise(rng, res, res, 32, 64, octaves=3)
    rough = np.clip(cell_rough[cell] + 0.3 * (fine - 0.5), 0.05, 1.0)
    metal = cell_metal[cell] * border
    spec_reduction = 0.4 * (1.0 - border)             # ks.x: grooves lose highlights
    ks = np.stack([spec_reduction, rough, metal], axis=-1)
    height = 0.6 * border + 0.4 * fine
    normal = _tex.normal_from_height(height, strength=res / 64.0)
    return Material(name="spiky", kd=_tex.to_tex(kd), ks=_tex.to_tex(ks),
                    normal=_tex.to_tex(normal))


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "spiky" asset (see the module docstring)."""
    rng = np.random.default_rng([seed, 2])
    g = sphere_arrays(triangles)
    pos = displace(g["pos"], rng)
    pos *= 0.95 / np.abs(pos).max()
    return Mesh(v_pos=to_t(pos), t_pos_idx=to_i(g["tri"]), v_tex=to_t(g["uv"]),
                t_tex_idx=to_i(g["tri_uv"]), materials=(spiky_material(rng, texture_res),))
