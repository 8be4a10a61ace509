"""Texture transfer: bake a reference mesh's appearance onto another mesh's UV atlas.

Used by the QEM baseline (baseline.py). For each texel of the target atlas we
find its 3D point on the target surface (a small barycentric fill in UV
space, written here in numpy so baking does not depend on a render backend),
find the closest point on the reference surface (scipy cKDTree over dense
area-weighted reference samples, then projection onto the sample's triangle),
and sample the reference's textures there; kd is multiplied by the
reference's vertex color (Mesh.v_color, interpolated with the closest
point's barycentrics) where it has one, so a vertex-colored model bakes to
a base-color texture that shows its colors. Every texel outside the charts then
takes the value of its nearest covered texel (base.texel_fill), so bilinear
filtering at chart borders and every mip level see the charts' own colours,
never an empty background.

Normals are baked in tangent space of the target mesh: the reference's
world-space shading normal (its vertex normals, or face normals, perturbed by
its normal map when it has tangents) is expressed in the target's
interpolated (tangent, bitangent, normal) frame, so the target's normal map
restores the detail decimation removed.

All arrays here are numpy float64 unless stated; texel (row i, col j) has its
centre at uv = ((j + 0.5) / W, (i + 0.5) / H) (glTF convention, DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from difflod.base.texel_fill import fill_from_nearest
from difflod.geometry.sampling import sample_surface
from difflod.mesh import Mesh

__all__ = [
    "SurfaceAttributes",
    "UVRaster",
    "bake_textures",
    "baked_images",
    "chart_mask",
    "rasterize_uv",
    "reference_attributes",
    "reference_normals",
    "tangent_space",
    "to_image",
    "vertex_normals",
    "vertex_tangents",
]


@dataclass(frozen=True)
class UVRaster:
    """Which triangle covers each texel, and where.

    Attributes:
        tri: `[H,W]` int64 triangle id, -1 where no triangle covers the texel.
        bary: `[H,W,3]` float64 barycentric coordinates in that triangle.
    """

    tri: np.ndarray
    bary: np.ndarray


def rasterize_uv(uv: np.ndarray, t_idx: np.ndarray, res: int) -> UVRaster:
    """Fill the texels of a `res` x `res` atlas covered by each UV triangle.

    Args:
        uv: `[T,2]` UVs in [0,1]; t_idx: `[F,3]` int indices into uv.
    Returns:
        UVRaster; a texel is covered when its centre is inside the triangle
        (edges inclusive, with a tiny tolerance).
    """
    tri_map = np.full((res, res), -1, dtype=np.int64)
    bary_map = np.zeros((res, res, 3), dtype=np.float64)
    pix = np.asarray(uv, dtype=np.float64)[np.asarray(t_idx)] * res - 0.5  # [F,3,2] texel coords
    lo = np.clip(np.floor(pix.min(axis=1)).astype(np.int64), 0, res - 1)
    hi = np.clip(np.ceil(pix.max(axis=1)).astype(np.int64), 0, res - 1)
    for f in range(pix.shape[0]):
        (x0, y0), (x1, y1) = lo[f], hi[f]
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
        a, b, c = pix[f]
        det = (b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1])
        if abs(det) < 1e-12:
            continue
        w1 = ((xs - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (ys - a[1])) / det
        w2 = ((b[0] - a[0]) * (ys - a[1]) - (xs - a[0]) * (b[1] - a[1])) / det
        w0 = 1.0 - w1 - w2
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        if not inside.any():
            continue
        yi, xi = ys[inside], xs[inside]
        tri_map[yi, xi] = f
        bary_map[yi, xi] = np.stack([w0[inside], w1[inside], w2[inside]], axis=-1)
    return UVRaster(tri=tri_map, bary=bary_map)


def chart_mask(v_tex: np.ndarray | torch.Tensor, t_tex_idx: np.ndarray | torch.Tensor,
               res: tuple[int, int]) -> np.ndarray | None:
    """`[H,W]` bool: texels whose centre is inside some UV triangle, or None.

    Args:
        v_tex: `[T,2]` UVs (glTF convention); t_tex_idx: `[F,3]` indices into v_tex.
        res: (H, W) of the atlas.
    Returns:
        The mask, or None when it is unknown: the atlas is not square, or some
        UV lies outside [0,1] (a wrapping, tiled map has no gutters).
    """
    uv = np.asarray(torch.as_tensor(v_tex).detach().cpu().double())
    idx = np.asarray(torch.as_tensor(t_tex_idx).detach().cpu().long())
    h, w = int(res[0]), int(res[1])
    if h != w or uv.size == 0 or uv.min() < 0.0 or uv.max() > 1.0:
        return None
    return rasterize_uv(uv, idx, h).tri >= 0


def _sample_bilinear(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrap-around (glTF REPEAT). tex `[H,W,C]`, uv `[N,2]` -> `[N,C]`."""
    h, w = tex.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = uv[:, 1] * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0i, y0i = x0.astype(np.int64) % w, y0.astype(np.int64) % h
    x1i, y1i = (x0i + 1) % w, (y0i + 1) % h
    return ((tex[y0i, x0i] * (1 - fx) + tex[y0i, x1i] * fx) * (1 - fy)
            + (tex[y1i, x0i] * (1 - fx) + tex[y1i, x1i] * fx) * fy)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def vertex_normals(v_pos: np.ndarray, t_pos_idx: np.ndarray) -> np.ndarray:
    """Area-weighted smooth vertex normals `[V,3]` (unit; +Y where undefined)."""
    p = v_pos[t_pos_idx]
    fn = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    vn = np.zeros_like(v_pos, dtype=np.float64)
    for k in range(3):
        np.add.at(vn, t_pos_idx[:, k], fn)
    bad = np.linalg.norm(vn, axis=1) < 1e-20
    vn[bad] = (0.0, 1.0, 0.0)
    return _normalize(vn)


def vertex_tangents(v_pos: np.ndarray, t_pos_idx: np.ndarray, v_tex: np.ndarray,
                    t_tex_idx: np.ndarray, v_nrm: np.ndarray) -> np.ndarray:
    """Per-UV-vertex tangents `[T,4]` (xyz unit, w = handedness), indexed by t_tex_idx.

    The tangent follows +u; it is Gram-Schmidt orthogonalized against the
    normal of the position vertex that uses the UV vertex. The handedness
    follows difflod's convention (geometry.tangents): the bitangent
    w * cross(n, t) points towards -v, the first texel row (glTF, Blender).
    """
    p, t = v_pos[t_pos_idx], v_tex[t_tex_idx]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    r = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(r) < 1e-20, 1e-20, r)
    ft = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) / r[:, None]
    fb = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) / r[:, None]
    tn = np.zeros((len(v_tex), 3))
    bn = np.zeros((len(v_tex), 3))
    nn = np.zeros((len(v_tex), 3))
    for k in range(3):
        np.add.at(tn, t_tex_idx[:, k], ft)
        np.add.at(bn, t_tex_idx[:, k], fb)
        np.add.at(nn, t_tex_idx[:, k], v_nrm[t_pos_idx[:, k]])
    nn = _normalize(nn)
    tn = tn - nn * np.sum(tn * nn, axis=1, keepdims=True)
    fallback = np.cross(nn, np.where(np.abs(nn[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
    tn = np.where(np.linalg.norm(tn, axis=1, keepdims=True) < 1e-12, fallback, tn)
    tn = _normalize(tn)
    w = np.where(np.sum(np.cross(nn, tn) * bn, axis=1) > 0.0, -1.0, 1.0)
    return np.concatenate([tn, w[:, None]], axis=1)


def _closest_on_triangles(q: np.ndarray, a: np.ndarray, b: np.ndarray,
                          c: np.ndarray) -> np.ndarray:
    """Barycentrics `[N,3]` of (approximately) the closest point to q on triangles abc.

    Projects q onto the triangle's plane and clamps the barycentrics into the
    triangle (negative weights zeroed, then renormalized): exact inside the
    triangle, close enough near its edges for texture lookup.
    """
    e0, e1, d = b - a, c - a, q - a
    d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
    d20, d21 = (d * e0).sum(1), (d * e1).sum(1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) < 1e-30, 1e-30, den)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1.0 - v - w, v, w], axis=1), 0.0, None)
    s = bary.sum(1, keepdims=True)
    return np.where(s > 1e-12, bary / np.maximum(s, 1e-12), 1.0 / 3.0)


def bake_textures(reference: Mesh, target_pos: np.ndarray, target_idx: np.ndarray,
                  target_uv: np.ndarray, target_uv_idx: np.ndarray, res: int, *,
                  seed: int = 0, samples: int | None = None,
                  bake_normals: bool = True) -> dict[str, np.ndarray | None]:
    """Bake reference kd, ks, normals, occlusion and emissive onto the target's UV atlas.

    Args:
        reference: the detailed mesh (any materials; UVs optional).
        target_pos `[V,3]`, target_idx `[F,3]`, target_uv `[T,2]` in [0,1],
            target_uv_idx `[F,3]`: the target mesh.
        res: atlas resolution (square).
        samples: reference surface samples for the nearest-point search
            (default: max(200k, 4 F_ref)).
    Returns:
        {"kd": `[res,res,3 or 4]`, "ks": `[res,res,3]`, "normal": `[res,res,3]` or
         None, "occlusion": `[res,res,1]` or None (when no reference material has one), "emissive": `[res,res,3]` or None (likewise; materials without one emit 0), "v_nrm": `[V,3]`, "v_tng": `[T,4]`, "coverage": `[res,res]` bool},
        float32 arrays, rows in glTF order.
    """
    ref_pos = reference.v_pos.detach().cpu().double().numpy()
    ref_idx = reference.t_pos_idx.cpu().numpy()
    tpos = np.asarray(target_pos, dtype=np.float64)
    tidx = np.asarray(target_idx, dtype=np.int64)
    tuv = np.asarray(target_uv, dtype=np.float64)
    tuv_idx = np.asarray(target_uv_idx, dtype=np.int64)

    raster = rasterize_uv(tuv, tuv_idx, res)
    covered = raster.tri >= 0
    ftri = raster.tri[covered]
    fbary = raster.bary[covered]
    points = np.einsum("nk,nkc->nc", fbary, tpos[tidx[ftri]])

    # Closest reference point: nearest dense sample, then project onto its triangle.
    from scipy.spatial import cKDTree

    count = samples if samples is not None else max(200_000, 4 * len(ref_idx))
    spts, stri, _ = sample_surface(ref_pos, ref_idx, count, np.random.default_rng(seed))
    _, nearest = cKDTree(spts).query(points, workers=1)
    rtri = stri[nearest]
    rp = ref_pos[ref_idx[rtri]]
    rbary = _closest_on_triangles(points, rp[:, 0], rp[:, 1], rp[:, 2])

    attrs = reference_attributes(reference, rtri, rbary)

    v_nrm = vertex_normals(tpos, tidx)
    v_tng = vertex_tangents(tpos, tidx, tuv, tuv_idx, v_nrm)
    n_ts = None
    if bake_normals:
        n_world = reference_normals(reference, rtri, rbary, attrs.nmap)
        n_ts = tangent_space(n_world, ftri, fbary, tidx, tuv_idx, v_nrm, v_tng)
    return baked_images(attrs, n_ts, covered, res, v_nrm, v_tng, covered)


def baked_images(attrs: SurfaceAttributes, n_ts: np.ndarray | None, texels: np.ndarray,
                 res: int, v_nrm: np.ndarray, v_tng: np.ndarray,
                 coverage: np.ndarray) -> dict[str, np.ndarray | None]:
    """A bake's result (see `bake_textures`): each channel of `attrs`, values at
    the `texels` mask, as a `res` atlas filled from them; `n_ts` the tangent-space
    normals there, or None for no normal map."""
    out: dict[str, np.ndarray | None] = {"normal": None}
    if n_ts is not None:
        img = to_image(n_ts, texels, res, (0.0, 0.0, 1.0))
        out["normal"] = _normalize(img.astype(np.float64)).astype(np.float32)
    out["kd"] = to_image(attrs.kd, texels, res)
    out["ks"] = to_image(attrs.ks, texels, res)
    out["occlusion"] = to_image(attrs.occlusion, texels, res, (1.0,)) \
        if attrs.occlusion is not None else None
    out["emissive"] = to_image(attrs.emissive, texels, res) \
        if attrs.emissive is not None else None
    out["v_nrm"] = v_nrm.astype(np.float32)
    out["v_tng"] = v_tng.astype(np.float32)
    out["coverage"] = coverage
    return out


@dataclass(frozen=True)
class SurfaceAttributes:
    """The reference's material channels at N surface points, float64.

    Attributes:
        kd: `[N,3|4]` base colour (x vertex colour), alpha 4th where any material has one.
        ks: `[N,3]` (occlusion-unused, roughness, metallic).
        nmap: `[N,3]` tangent-space normal-map value ((0,0,1) without a map).
        occlusion: `[N,1]` or None when no material has an occlusion map.
        emissive: `[N,3]` or None when no material emits.
        cutoff: `[N]` the alpha a point must reach to be drawn (its MASK
            material's cutoff; 0.5 for BLEND, 0 for OPAQUE).
    """

    kd: np.ndarray
    ks: np.ndarray
    nmap: np.ndarray
    occlusion: np.ndarray | None
    emissive: np.ndarray | None
    cutoff: np.ndarray


def reference_attributes(reference: Mesh, rtri: np.ndarray, rbary: np.ndarray, *,
                         base_colour_only: bool = False) -> SurfaceAttributes:
    """Sample every material channel of `reference` at points (triangle `rtri [N]`,
    barycentrics `rbary [N,3]`). `base_colour_only`: kd (with its alpha) and the
    cutoff only; ks, normals, occlusion and emission are left at their neutral
    values (the card bake's visibility test of millions of samples needs no more)."""
    ref_idx = reference.t_pos_idx.cpu().numpy()
    if reference.has_uv:
        ruv_all = reference.v_tex.detach().cpu().double().numpy()
        ruv = np.einsum("nk,nkc->nc", rbary, ruv_all[reference.t_tex_idx.cpu().numpy()[rtri]])
    else:
        ruv = np.zeros((len(rtri), 2))
    mat_ids = reference.material_ids().cpu().numpy()[rtri]
    # alpha only where a material has one (MASK, BLEND): an OPAQUE material's 4th
    # channel means nothing (glTF), so its texels bake opaque, whatever it holds
    kd_channels = 4 if any(m.has_alpha for m in reference.materials) else 3
    kd = np.zeros((len(rtri), kd_channels))
    ks = np.zeros((len(rtri), 3))
    nmap = np.zeros((len(rtri), 3))
    nmap[:, 2] = 1.0
    with_occlusion = any(m.occlusion is not None for m in reference.materials)
    occ = np.ones((len(rtri), 1))
    with_emissive = any(m.emissive is not None for m in reference.materials)
    emit = np.zeros((len(rtri), 3))
    cutoff = np.zeros(len(rtri))
    for m_id, mat in enumerate(reference.materials):
        sel = mat_ids == m_id
        if not sel.any():
            continue
        kd_m = _sample_bilinear(mat.kd.detach().cpu().double().numpy(), ruv[sel])
        kd[sel, :3] = kd_m[:, :3]
        if kd_channels == 4:
            kd[sel, 3] = kd_m[:, 3] if mat.has_alpha else 1.0
        if mat.has_alpha:
            cutoff[sel] = mat.alpha_cutoff if mat.alpha_mode == "MASK" else 0.5
        if base_colour_only:
            continue
        ks[sel] = _sample_bilinear(mat.ks.detach().cpu().double().numpy(), ruv[sel])
        if mat.normal is not None:
            n = _sample_bilinear(mat.normal.detach().cpu().double().numpy(), ruv[sel])
            n[:, :2] *= mat.normal_scale
            nmap[sel] = n
        if mat.occlusion is not None:
            occ[sel] = _sample_bilinear(mat.occlusion.detach().cpu().double().numpy(), ruv[sel])
        if mat.emissive is not None:
            emit[sel] = _sample_bilinear(mat.emissive.detach().cpu().double().numpy(), ruv[sel])

    if reference.v_color is not None:
        # glTF's baseColor = factor x texture x COLOR_0, at the closest point
        vcol = reference.v_color.detach().cpu().double().numpy()[ref_idx[rtri]]  # [N,3,4]
        tint = np.einsum("nk,nkc->nc", rbary, vcol)
        kd *= tint[:, :kd_channels]
    return SurfaceAttributes(kd=kd, ks=ks, nmap=nmap,
                             occlusion=occ if with_occlusion else None,
                             emissive=emit if with_emissive else None, cutoff=cutoff)


def tangent_space(n_world: np.ndarray, ftri: np.ndarray, fbary: np.ndarray,
                  tidx: np.ndarray, tuv_idx: np.ndarray, v_nrm: np.ndarray,
                  v_tng: np.ndarray) -> np.ndarray:
    """World normals `[N,3]` at target texels (triangle `ftri`, barycentrics
    `fbary`) in the target's interpolated (tangent, bitangent, normal) frame:
    unit `[N,3]`, never pointing below the surface."""
    nrm = _normalize(np.einsum("nk,nkc->nc", fbary, v_nrm[tidx[ftri]]))
    tng4 = v_tng[tuv_idx[ftri]]
    tng = np.einsum("nk,nkc->nc", fbary, tng4[..., :3])
    tng = _normalize(tng - nrm * np.sum(tng * nrm, axis=1, keepdims=True))
    bit = tng4[:, 0, 3:4] * np.cross(nrm, tng)
    n_ts = np.stack([(n_world * tng).sum(1), (n_world * bit).sum(1),
                     (n_world * nrm).sum(1)], axis=1)
    n_ts[:, 2] = np.maximum(n_ts[:, 2], 0.05)
    return _normalize(n_ts)


def reference_normals(reference: Mesh, rtri: np.ndarray, rbary: np.ndarray,
                      nmap: np.ndarray) -> np.ndarray:
    """World-space shading normals `[N,3]` of the reference at the given surface points
    (its vertex or face normals, perturbed by the normal-map values `nmap`)."""
    ref_pos = reference.v_pos.detach().cpu().double().numpy()
    ref_idx = reference.t_pos_idx.cpu().numpy()
    p = ref_pos[ref_idx[rtri]]
    face_n = _normalize(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]))
    if reference.v_nrm is not None and reference.t_nrm_idx is not None:
        vn = reference.v_nrm.detach().cpu().double().numpy()[reference.t_nrm_idx.cpu().numpy()[rtri]]
        n = _normalize(np.einsum("nk,nkc->nc", rbary, vn))
    else:
        n = face_n
    if reference.v_tng is not None and reference.t_tng_idx is not None:
        tg = reference.v_tng.detach().cpu().double().numpy()[reference.t_tng_idx.cpu().numpy()[rtri]]
        t = np.einsum("nk,nkc->nc", rbary, tg[..., :3])
        t = _normalize(t - n * np.sum(t * n, axis=1, keepdims=True))
        b = tg[:, 0, 3:4] * np.cross(n, t)
        n = _normalize(t * nmap[:, 0:1] + b * nmap[:, 1:2] + n * nmap[:, 2:3])
    return n


def to_image(values: np.ndarray, covered: np.ndarray, res: int,
              empty: tuple[float, ...] = (0.0,)) -> np.ndarray:
    """Scatter per-texel values `[N,C]` into a `[res,res,C]` float32 atlas.

    Texels outside the charts take their nearest covered texel's value; an
    atlas with no covered texel at all is `empty` everywhere.
    """
    img = np.empty((res, res, values.shape[1]), dtype=np.float64)
    if not covered.any():
        img[...] = empty
        return img.astype(np.float32)
    img[covered] = values
    return fill_from_nearest(img, covered).astype(np.float32)


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """float32 CPU tensor of a numpy array."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
