"""The "shrub" asset: many alpha-masked leaf quads around a few curved stems.

Like nvdiffmodeling's foliage examples: thousands of overlapping cut-out
leaves (2 triangles each) whose shape comes from the alpha channel of the
texture (alpha_mode "MASK", cutoff 0.5), so simplifying it is a problem of
appearance, not of geometry. One material, a 2x2 atlas: three leaf variants
and a bark cell (alpha 1) used by the stems. Stems are open tubes that curve
outward in their own vertical plane; about 6% of the triangles go to them.
Leaf size shrinks with the leaf count, keeping a similar number of layers.
"""

from __future__ import annotations

import math

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import fit_unit, to_i, to_t
from difflod.mesh import Material, Mesh

STEMS = 7
MARGIN = 0.02        # atlas cell margin, in UV units


def leaf_atlas(rng: np.random.Generator, res: int) -> Material:
    """RGBA atlas: cells (0,0), (0,1), (1,0) are leaves, (1,1) is bark."""
    half = max(2, res // 2)
    y = ((np.arange(half) + 0.5) / half)[:, None]            # 0 at leaf base, 1 at tip
    x = ((np.arange(half) + 0.5) / half)[None, :] * 2.0 - 1.0  # across, in [-1,1]
    y_in = (y - 2 * MARGIN) / (1.0 - 4 * MARGIN)
    width = 0.8 * np.sin(math.pi * np.clip(y_in, 0.0, 1.0)) ** 0.9
    alpha = (np.abs(x) < width).astype(np.float64)
    side_veins = (np.abs(x) - (y_in - 0.1) * 0.5) % 0.2
    vein = np.exp(-(x / 0.05) ** 2) + 0.5 * np.exp(-(side_veins / 0.03) ** 2)
    cells = []
    for hue in rng.uniform(0.2, 0.36, 3):                       # three leaf variants
        noise = _tex.value_noise(rng, half, half, 4, 4, octaves=3)
        rgb = _tex.hsv_to_rgb(np.full_like(noise, hue) + 0.03 * (noise - 0.5),
                              0.6 + 0.2 * noise, (0.35 + 0.35 * noise) * (1.0 - 0.3 * vein))
        a = np.broadcast_to(alpha, noise.shape)[..., None]
        cells.append(np.concatenate([_tex.srgb_to_linear(rgb), a], -1))
    bark_noise = _tex.value_noise(rng, half, half, 2, 8, octaves=3)
    bark = _tex.srgb_to_linear(np.stack([0.35 + 0.2 * bark_noise, 0.24 + 0.15 * bark_noise,
                                         0.15 + 0.1 * bark_noise], -1))
    cells.append(np.concatenate([bark, np.ones((half, half, 1))], -1))
    kd = np.concatenate([np.concatenate(cells[:2], 1), np.concatenate(cells[2:], 1)], 0)
    rough = np.where(kd[..., 3:] > 0, 0.55, 1.0) * np.ones_like(kd[..., :1])
    ks = np.concatenate([np.zeros_like(rough), rough, np.zeros_like(rough)], -1)
    return Material(name="leaves", kd=_tex.to_tex(kd), ks=_tex.to_tex(ks), alpha_mode="MASK",
                    alpha_cutoff=0.5, double_sided=True)


def stems(rng: np.random.Generator, along: int, around: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stem tubes. Returns (pos `[V,3]`, tri, uv, tri_uv, centerline `[S,along+1,3]`,
    tangent `[S,along+1,3]`), float64 / int64."""
    azim = rng.uniform(0.0, 2.0 * math.pi, STEMS)
    tilt0 = rng.uniform(0.0, 0.5, STEMS)
    bend = rng.uniform(0.3, 1.0, STEMS)
    length = rng.uniform(1.3, 1.9, STEMS)
    s = np.linspace(0.0, 1.0, along + 1)
    angle = tilt0[:, None] + bend[:, None] * s[None, :]             # from vertical
    step = length[:, None] / along
    horiz = np.concatenate([np.zeros((STEMS, 1)), np.cumsum(np.sin(angle[:, :-1]) * step, 1)], 1)
    vert = np.concatenate([np.zeros((STEMS, 1)), np.cumsum(np.cos(angle[:, :-1]) * step, 1)], 1)
    out = np.stack([np.cos(azim), np.zeros(STEMS), np.sin(azim)], 1)  # [S,3]
    side = np.stack([-np.sin(azim), np.zeros(STEMS), np.cos(azim)], 1)
    up = np.array([0.0, 1.0, 0.0])
    center = horiz[..., None] * out[:, None] + vert[..., None] * up
    tangent = np.sin(angle)[..., None] * out[:, None] + np.cos(angle)[..., None] * up
    binormal = np.cross(tangent, np.broadcast_to(side[:, None], tangent.shape))
    radius = 0.045 * (1.0 - 0.8 * s)[None, :, None]
    theta = np.arange(around) * (2.0 * math.pi / around)
    ring = (np.cos(theta)[None, None, :, None] * side[:, None, None, :]
            + np.sin(theta)[None, None, :, None] * binormal[:, :, None, :])
    pos = (center[:, :, None] + radius[..., None] * ring).reshape(-1, 3)
    i = np.arange(along)[:, None]
    j = np.arange(around)[None, :]
    a = i * around + j
    b, c = a + around, i * around + (j + 1) % around
    d = c + around
    one = np.stack([np.stack([a, b, c], -1), np.stack([b, d, c], -1)], 2).reshape(-1, 3)
    offsets = (np.arange(STEMS) * (along + 1) * around)[:, None, None]
    tri = (one[None] + offsets).reshape(-1, 3)
    ua = i * (around + 1) + j
    one_uv = np.stack([np.stack([ua, ua + around + 1, ua + 1], -1),
                       np.stack([ua + around + 1, ua + around + 2, ua + 1], -1)], 2).reshape(-1, 3)
    uu, vv = np.meshgrid(np.arange(along + 1) / along, np.arange(around + 1) / around,
                         indexing="ij")
    cell_uv = np.stack([0.5 + MARGIN + (0.5 - 2 * MARGIN) * vv,
                        0.5 + MARGIN + (0.5 - 2 * MARGIN) * uu], -1).reshape(-1, 2)
    return pos, tri, cell_uv, one_uv, center, tangent


def leaves(rng: np.random.Generator, count: int, center: np.ndarray, tangent: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` leaf quads on the stems. Returns (pos `[4n,3]`, uv `[4n,2]`, tri `[2n,3]`)."""
    stem = rng.integers(0, STEMS, count)
    t = 0.25 + 0.75 * np.sqrt(rng.random(count))                    # denser toward the tips
    knots = center.shape[1] - 1
    k = np.minimum((t * knots).astype(np.int64), knots - 1)
    f = (t * knots - k)[:, None]
    base = center[stem, k] * (1.0 - f) + center[stem, k + 1] * f
    tng = tangent[stem, k]
    rand = rng.normal(size=(count, 3))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    d = rand + 0.6 * tng + np.array([0.0, 0.3, 0.0])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    e = np.cross(d, rng.normal(size=(count, 3)))
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)
    size = math.sqrt(25.0 / max(count, 1)) * rng.uniform(0.7, 1.3, count)[:, None]
    length, width = np.minimum(size * 1.6, 0.45), np.minimum(size * 0.9, 0.25)
    half_w, tip = e * width * 0.5, base + d * length
    corners = np.stack([base - half_w, base + half_w, tip + half_w, tip - half_w], 1)
    cell = rng.integers(0, 3, count)
    cu, cv = (cell % 2) * 0.5, (cell // 2) * 0.5
    lo_u, hi_u = cu + MARGIN, cu + 0.5 - MARGIN
    lo_v, hi_v = cv + MARGIN, cv + 0.5 - MARGIN
    # Leaf base at the cell's first row (v low), tip at its last.
    uv = np.stack([np.stack([lo_u, lo_v], -1), np.stack([hi_u, lo_v], -1),
                   np.stack([hi_u, hi_v], -1), np.stack([lo_u, hi_v], -1)], 1)
    q = np.arange(count)[:, None] * 4
    tri = np.stack([q + np.array([0, 1, 2]), q + np.array([0, 2, 3])], 1).reshape(-1, 3)
    return corners.reshape(-1, 3), uv.reshape(-1, 2), tri


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "shrub" asset (see the module docstring)."""
    rng = np.random.default_rng([seed, 4])
    stem_budget = max(2 * STEMS * 3, int(0.06 * triangles))
    around = int(np.clip(round(math.sqrt(stem_budget / (2.0 * STEMS) / 6.0)), 3, 12))
    along = max(1, stem_budget // (2 * STEMS * around))
    s_pos, s_tri, s_uv, s_tri_uv, center, tangent = stems(rng, along, around)
    s_uv_all = np.tile(s_uv, (STEMS, 1))
    uv_offsets = (np.arange(STEMS) * s_uv.shape[0])[:, None, None]
    s_tri_uv_all = (s_tri_uv[None] + uv_offsets).reshape(-1, 3)
    count = max(1, (triangles - s_tri.shape[0]) // 2)
    l_pos, l_uv, l_tri = leaves(rng, count, center, tangent)
    pos = fit_unit(np.concatenate([s_pos, l_pos]))
    tri = np.concatenate([s_tri, l_tri + s_pos.shape[0]])
    uv = np.concatenate([s_uv_all, l_uv])
    tri_uv = np.concatenate([s_tri_uv_all, l_tri + s_uv_all.shape[0]])
    return Mesh(v_pos=to_t(pos), t_pos_idx=to_i(tri), v_tex=to_t(uv), t_tex_idx=to_i(tri_uv),
                materials=(leaf_atlas(rng, texture_res),))
