"""Procedural texture building blocks for the assets: noise, cells, normal maps.

Everything is vectorized numpy in float32/float64 and periodic: a pattern
built here tiles in both u and v, so textures stay seamless where UVs wrap.
Images are `[H,W]` or `[H,W,C]` numpy arrays, row 0 = v=0 (glTF convention).
Written by hand (not a library) because the few lines needed must be exactly
periodic, seeded and deterministic; general noise packages are not.
"""

from __future__ import annotations

import numpy as np
import torch


def value_noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int,
                octaves: int = 4, gain: float = 0.5) -> np.ndarray:
    """Periodic fractal value noise `[h,w]` float64 in [0,1].

    cells_y/cells_x: lattice cells of the first octave across the image; each
    further octave doubles them and scales the amplitude by `gain`.
    """
    total = np.zeros((h, w))
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        gy, gx = cells_y << o, cells_x << o
        lattice = rng.random((gy, gx))
        iy0, iy1, fy = _lattice_coords(h, gy)
        ix0, ix1, fx = _lattice_coords(w, gx)
        rows = lattice[iy0] * (1.0 - fy)[:, None] + lattice[iy1] * fy[:, None]  # [h,gx]
        total += amp * (rows[:, ix0] * (1.0 - fx) + rows[:, ix1] * fx)
        norm += amp
        amp *= gain
    return total / norm


def _lattice_coords(n: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = (np.arange(n) + 0.5) * (g / n)
    i0 = np.floor(x).astype(np.int64)
    f = x - i0
    f = f * f * (3.0 - 2.0 * f)  # smoothstep: C1 across lattice lines
    return i0 % g, (i0 + 1) % g, f


def cells(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Periodic jittered-grid Voronoi cells.

    Returns (f1, f2, cell_id): distances `[h,w]` float64 to the nearest and
    second nearest feature point (in cell units) and the int64 id of the
    nearest cell, in [0, cells_y*cells_x).
    """
    jitter = rng.random((cells_y, cells_x, 2)) * 0.8 + 0.1
    y = (np.arange(h) + 0.5) * (cells_y / h)
    x = (np.arange(w) + 0.5) * (cells_x / w)
    cy, cx = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    f1 = np.full((h, w), np.inf)
    f2 = np.full((h, w), np.inf)
    best = np.zeros((h, w), dtype=np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ny, nx = cy + dy, cx + dx
            wy, wx = ny % cells_y, nx % cells_x
            py = ny[:, None] + jitter[wy[:, None], wx[None, :], 0]
            px = nx[None, :] + jitter[wy[:, None], wx[None, :], 1]
            d = np.sqrt((py - y[:, None]) ** 2 + (px - x[None, :]) ** 2)
            ids = wy[:, None] * cells_x + wx[None, :]
            closer = d < f1
            f2 = np.where(closer, f1, np.minimum(f2, d))
            best = np.where(closer, ids, best)
            f1 = np.where(closer, d, f1)
    return f1, f2, best


def normal_from_height(height: np.ndarray, strength: float) -> np.ndarray:
    """Tangent-space normal map `[h,w,3]` float64 in [-1,1] from a periodic height.

    strength: height change per texel width that tilts the normal by 45 degrees
    times `strength`. +X follows +u (columns); +Y is "up" in the image, i.e.
    toward decreasing v (rows), as glTF expects; +Z is out of the surface.
    """
    dhdu = (np.roll(height, -1, axis=1) - np.roll(height, 1, axis=1)) * 0.5
    dhdv = (np.roll(height, -1, axis=0) - np.roll(height, 1, axis=0)) * 0.5
    n = np.stack([-dhdu * strength, dhdv * strength, np.ones_like(height)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`[...,3]` RGB in [0,1] from hue in [0,1) (wrapping), saturation, value."""
    k = (np.stack([5.0, 3.0, 1.0]) + (np.asarray(h)[..., None] % 1.0) * 6.0) % 6.0
    f = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return np.asarray(v)[..., None] * (1.0 - np.asarray(s)[..., None] * f)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Convert display (sRGB) values in [0,1] to linear, as textures store linear."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def to_tex(a: np.ndarray) -> torch.Tensor:
    """`[H,W,C]` float32 tensor from a numpy image (adds C=1 for `[H,W]`)."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    return torch.from_numpy(np.ascontiguousarray(a))


def const_tex(*values: float) -> torch.Tensor:
    """A constant `[1,1,C]` float32 texture."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, len(values))
