"""A billboard-cloud base mesh for foliage: crossed alpha-tested cards.

QEM cannot simplify foliage. A shrub of thousands of cut-out leaves (2
triangles each, their shape in a MASK alpha) decimated to 1% keeps a few
dozen leaves and loses the rest: the measured silhouette overlap with the
reference was 0.06-0.10 at 200 triangles. Training cannot grow what is not
there. Games draw such models as a few textured cards, and so does this
base:

1. Surface samples the reference draws (alpha at or above its cutoff) are
   grouped into `triangles // 4` clusters by k-means (scipy).
2. Each cluster gets two crossed cards through its centroid, both along the
   cluster's longest principal axis: one across the middle axis, one across
   the shortest. A card is the rectangle holding the cluster's samples
   projected on its plane.
3. Each card has its own cell of a square atlas. Its texels are baked by
   projection, as a billboard is: dense samples of the cluster land in the
   texel they project to, and the one nearest the card's front side gives
   the texel's material channels; alpha is the part of the texel's 2 x 2
   sub-texels that some drawn sample reached. The material is MASK at 0.5,
   double-sided.

Training then moves the cards and refines every texel, alpha included. All
arrays are numpy float64 unless stated; the reference is in the unit frame.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from difflod.base.bake import (
    baked_images,
    rasterize_uv,
    reference_attributes,
    reference_normals,
    tangent_space,
    vertex_normals,
    vertex_tangents,
)
from difflod.geometry.sampling import sample_surface
from difflod.mesh import Mesh

__all__ = ["MIN_TEXTURE", "card_cloud", "is_foliage"]

FOLIAGE_AREA_SHARE = 0.5    # MASK surface share at which `base_method: auto` takes cards
FOLIAGE_CLEAR_SHARE = 0.1   # ... if that much of the MASK surface is cut away
FOLIAGE_SAMPLES = 20_000
CLUSTER_SAMPLES = 60_000    # samples k-means groups
SAMPLES_PER_TEXEL = 12      # dense bake samples per texel of a card's projected cluster
MAX_SAMPLES = 4_000_000
PAD = 2                     # texels between a card's cell border and its chart
MIN_CARD_TEXELS = 8         # a card's chart is at least this many texels across
MIN_TEXTURE = 2 * (MIN_CARD_TEXELS + 2 * PAD)  # the smallest atlas: one cluster's two cards


def is_foliage(reference: Mesh) -> bool:
    """Whether MASK (cut-out) materials carry at least half the reference's
    surface and cut at least FOLIAGE_CLEAR_SHARE of it away (a model whose
    materials say MASK but draw everything is a solid, for QEM)."""
    mask = np.array([m.alpha_mode == "MASK" and m.has_alpha for m in reference.materials])
    if not mask.any():
        return False
    pos = reference.v_pos.detach().cpu().double().numpy()
    idx = reference.t_pos_idx.cpu().numpy()
    p = pos[idx]
    if not float(np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()) > 0:
        return False
    _, tri, bary = sample_surface(pos, idx, FOLIAGE_SAMPLES, np.random.default_rng(0))
    on_mask = mask[reference.material_ids().cpu().numpy()[tri]]
    if on_mask.mean() < FOLIAGE_AREA_SHARE:
        return False
    clear = ~_drawn(reference, tri[on_mask], bary[on_mask])
    return bool(clear.mean() >= FOLIAGE_CLEAR_SHARE)


def card_cloud(reference: Mesh, triangles: int, texture_res: int, *, seed: int = 0,
               bake_normals: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray, dict[str, np.ndarray | None]]:
    """Crossed cards of `reference`'s clusters, with their projection bake.

    Args:
        reference: the detailed mesh in the unit frame (any materials).
        triangles: the budget (>= 4); the result has 4 per cluster, at most this
            many, and no more cards than the atlas holds at MIN_CARD_TEXELS
            texels across each.
        texture_res: side of the square atlas, >= MIN_TEXTURE.
        seed: seed of the sampling and of k-means.
    Returns:
        (positions `[V,3]` float32, indices `[F,3]` int64, UVs `[T,2]` float32,
         UV indices `[F,3]` int64, the bake: as `bake.bake_textures`, kd with alpha).
    """
    if texture_res < MIN_TEXTURE:
        raise ValueError(f"card_cloud: texture_res must be >= {MIN_TEXTURE}, got {texture_res}")
    rng = np.random.default_rng(seed)
    ref_pos = reference.v_pos.detach().cpu().double().numpy()
    ref_idx = reference.t_pos_idx.cpu().numpy()
    pts, tri, bary = sample_surface(ref_pos, ref_idx, CLUSTER_SAMPLES, rng)
    drawn = _drawn(reference, tri, bary)
    if drawn.sum() < 4:
        drawn[:] = True
    seen = pts[drawn]
    fit = max(1, (texture_res // (MIN_CARD_TEXELS + 2 * PAD)) ** 2 // 2)  # clusters
    centroids = _clusters(seen, max(1, min(triangles // 4, fit)), seed)
    labels = _nearest(centroids, seen)
    cards = [card for k in range(len(centroids))
             for card in _card_frames(seen[labels == k], centroids[k], k)]
    if not cards:
        raise ValueError("card_cloud: the reference draws no surface to put cards on")

    grid = math.ceil(math.sqrt(len(cards)))
    cell = texture_res // grid
    inner = cell - 2 * PAD
    pos, idx, uv, uv_idx = _card_geometry(cards, grid, cell, texture_res)

    # dense samples: SAMPLES_PER_TEXEL on a card of the median cluster, whose
    # share of all samples is its share of the drawn ones times the drawn share
    share = np.bincount(labels, minlength=len(centroids)) / len(seen) * drawn.mean()
    want = SAMPLES_PER_TEXEL * inner ** 2 / max(float(np.median(share)), 1e-9)
    count = int(np.clip(want, 200_000, MAX_SAMPLES))
    dpts, dtri, dbary = sample_surface(ref_pos, ref_idx, count, rng)
    keep = _drawn(reference, dtri, dbary)
    dpts, dtri, dbary = dpts[keep], dtri[keep], dbary[keep]
    dlabel = _nearest(centroids, dpts)

    raster = rasterize_uv(uv, uv_idx, texture_res)
    winner = np.full((texture_res, texture_res), -1, dtype=np.int64)
    coverage = np.zeros((texture_res, texture_res))
    for c_id, card in enumerate(cards):
        sel = np.nonzero(dlabel == card.cluster)[0]
        local = dpts[sel] - card.origin
        a = (local @ card.u - card.lo[0]) / (card.hi[0] - card.lo[0]) * inner
        b = (local @ card.v - card.lo[1]) / (card.hi[1] - card.lo[1]) * inner
        depth = local @ card.n
        inside = (a >= 0) & (a < inner) & (b >= 0) & (b < inner)
        sel, a, b, depth = sel[inside], a[inside], b[inside], depth[inside]
        row0, col0 = (c_id // grid) * cell + PAD, (c_id % grid) * cell + PAD
        rows, cols = row0 + b.astype(np.int64), col0 + a.astype(np.int64)
        texel = rows * texture_res + cols
        # the sample nearest the front side wins its texel
        order = np.lexsort((-depth, texel))
        first = np.unique(texel[order], return_index=True)[1]
        won = order[first]
        winner.reshape(-1)[texel[won]] = sel[won]
        sub = np.unique(texel * 4 + (np.floor(a * 2) % 2).astype(np.int64) * 2
                        + (np.floor(b * 2) % 2).astype(np.int64))
        np.add.at(coverage.reshape(-1), sub // 4, 0.25)

    valid = (winner >= 0) & (raster.tri >= 0)
    w = winner[valid]
    attrs = reference_attributes(reference, dtri[w], dbary[w])
    # colour from the winners, alpha from the coverage (set below)
    attrs = dataclasses.replace(attrs, kd=np.concatenate([attrs.kd[:, :3],
                                                          np.ones((len(w), 1))], axis=1))
    v_nrm = vertex_normals(pos, idx)
    v_tng = vertex_tangents(pos, idx, uv, uv_idx, v_nrm)
    n_ts = None
    if bake_normals:
        n_world = reference_normals(reference, dtri[w], dbary[w], attrs.nmap)
        ftri, fbary = raster.tri[valid], raster.bary[valid]
        face_n = v_nrm[idx[ftri]].mean(1)  # the winner's normal, turned to the card's front
        n_world = np.where(np.sum(n_world * face_n, 1, keepdims=True) < 0, -n_world, n_world)
        n_ts = tangent_space(n_world, ftri, fbary, idx, uv_idx, v_nrm, v_tng)
    out = baked_images(attrs, n_ts, valid, texture_res, v_nrm, v_tng, raster.tri >= 0)
    kd_img = out["kd"]
    assert kd_img is not None
    kd_img[..., 3] = np.where(raster.tri >= 0, np.clip(coverage, 0.0, 1.0), 0.0)
    return pos.astype(np.float32), idx, uv.astype(np.float32), uv_idx, out


class _Card:
    """One card: the plane through `origin` spanned by unit `u`, `v` (normal
    `n` = u x v), the rectangle [lo, hi] in (u, v), and its cluster's index."""

    def __init__(self, origin: np.ndarray, u: np.ndarray, v: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray, cluster: int) -> None:
        self.origin, self.u, self.v = origin, u, v
        self.n = np.cross(u, v)
        self.lo, self.hi, self.cluster = lo, hi, cluster


def _drawn(reference: Mesh, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """`[N]` bool: surface points the reference draws (alpha at or above the cutoff)."""
    attrs = reference_attributes(reference, tri, bary, base_colour_only=True)
    if attrs.kd.shape[1] < 4:
        return np.ones(len(tri), dtype=bool)
    return attrs.kd[:, 3] >= np.maximum(attrs.cutoff, 1e-6)


def _clusters(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """`[K',3]` k-means centroids of `points` (K' <= k: empty clusters dropped)."""
    from scipy.cluster.vq import kmeans2

    k = min(k, len(points))
    centroids, labels = kmeans2(points, k, minit="++", seed=seed)
    return centroids[np.bincount(labels, minlength=k) > 0]


def _nearest(centroids: np.ndarray, points: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(centroids).query(points, workers=1)[1]


def _card_frames(points: np.ndarray, centroid: np.ndarray, cluster: int) -> list[_Card]:
    """The two crossed cards of one cluster (see the module docstring); none
    for a cluster of fewer than 3 samples."""
    if len(points) < 3:
        return []
    _, axes = np.linalg.eigh(np.cov((points - centroid).T))
    small, mid, large = axes[:, 0], axes[:, 1], axes[:, 2]
    cards = []
    for v in (mid, small):
        local = points - centroid
        proj = np.stack([local @ large, local @ v], axis=1)
        lo, hi = proj.min(0), proj.max(0)
        margin = 0.02 * np.maximum(hi - lo, 1e-6).max()
        lo, hi = lo - margin, hi + margin
        cards.append(_Card(centroid, large, v, lo, hi, cluster))
    return cards


def _card_geometry(cards: list[_Card], grid: int, cell: int, res: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quads of the cards (2 triangles each) and their UVs, card i in grid cell i."""
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    inner = cell - 2 * PAD
    pos, uv = [], []
    for i, card in enumerate(cards):
        ab = card.lo + corners * (card.hi - card.lo)
        pos.append(card.origin + ab[:, :1] * card.u + ab[:, 1:] * card.v)
        row0, col0 = (i // grid) * cell + PAD, (i % grid) * cell + PAD
        uv.append(np.stack([(col0 + corners[:, 0] * inner) / res,
                            (row0 + corners[:, 1] * inner) / res], axis=1))
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    idx = (np.arange(len(cards))[:, None, None] * 4 + quad[None]).reshape(-1, 3)
    return np.concatenate(pos), idx.astype(np.int64), np.concatenate(uv), idx.astype(np.int64)
