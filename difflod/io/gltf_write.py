"""glTF 2.0 writer: `.glb` (everything embedded) or `.gltf` + `<stem>.bin` + PNGs.

Layout of what is written:
- one mesh with one primitive per material that has triangles, all sharing
  one vertex set: each vertex is a unique (position, uv, normal, tangent)
  index tuple of the Mesh's corners, so the separate OBJ-style index buffers
  become glTF's single index buffer (uint16 or uint32 indices). The tuples
  are ranked by `unique_corners` (own code, not `np.unique(axis=0)`, which
  sorts rows and took 12 s of a 13 s save at 1M triangles);
- POSITION (with min/max) and NORMAL (unit) always; TEXCOORD_0 where the
  primitive's material has a texture, TANGENT (VEC4, w = +-1) where it has a
  normal map (an attribute nothing reads is a validator info). Normals and
  tangents are the mesh's own, or the very ones difflod's renderer shades it
  with (geometry.tangents.with_shading_frame), so a viewer reproduces the
  frame the normal map was made in and the shading stays smooth across UV
  seams, where glTF vertices must be split;
  JOINTS_0 (uint8/uint16) and WEIGHTS_0 (float) when present; COLOR_0
  (float VEC4, linear RGBA, as glTF's colors are) when the mesh has
  `v_color`, so a vertex-colored model read and saved keeps its colors;
- materials: a 1x1 kd becomes baseColorFactor, otherwise an sRGB PNG (RGBA when
  kd has alpha); a 1x1 ks becomes roughness/metallic factors, otherwise a
  linear PNG (R = 1, roughness G, metallic B) as metallicRoughnessTexture;
  ks.x, where it is not 0 (to 8 bits), becomes KHR_materials_specular:
  specularFactor = 1 - ks.x, or a specularTexture whose alpha holds
  1 - ks.x (the extension's channel; RGB white), which is the meaning
  difflod's BSDF gives it (shading/bsdf.py); Material.occlusion becomes an
  occlusionTexture (grey PNG, strength 1);
  normal maps as (n + 1) / 2 PNGs with normalTexture.scale; emissive as
  emissiveFactor (1x1) or an sRGB PNG emissiveTexture with factor 1, both
  divided by the peak value when it exceeds 1, which then becomes
  KHR_materials_emissive_strength's emissiveStrength (glTF's schema holds
  emissiveFactor to [0,1]; three.js's GLTFLoader reads the strength as
  emissiveIntensity); an all-zero emissive is not written; alphaMode,
  alphaCutoff, doubleSided. Displacement maps have no glTF slot and are dropped
  with a warning;
- a skin as J joint nodes under one "skeleton" root node, inverse bind
  matrices = identity, and one animation sampling each joint's TRS
  (decomposed from `Skin.matrices`) at `Skin.times` with LINEAR
  interpolation. Skinning matrices with shear cannot be expressed as TRS and
  are approximated (a warning gives the error);
- an LOD chain (`write_lods`) as MSFT_lod: node 0 holds the finest level and
  lists the coarser levels' nodes, which are outside the scene (a viewer
  without the extension shows level 0), with extras.MSFT_screencoverage, one
  value per level.
Files are written atomically; for .gltf the .gltf itself is renamed last.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
from itertools import pairwise
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pygltflib as gl
import torch
from PIL import Image

from difflod.geometry.tangents import with_shading_frame
from difflod.io.atomic import atomic_paths
from difflod.io.gltf_anim import decompose, trs_matrix
from difflod.mesh import Material, Mesh

__all__ = ["write", "write_lods"]

# zlib level of the PNGs: 2 encodes a 1024^2 texture about 3x faster than
# Pillow's default 6, for files about 20% larger; PNG stays lossless at any level
PNG_COMPRESS_LEVEL = 2

_FLOAT, _U8, _U16, _U32 = 5126, 5121, 5123, 5125
_ARRAY, _ELEMENTS = 34962, 34963
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


class _Blob:
    """The binary buffer under construction: bufferViews and accessors."""

    def __init__(self, doc: gl.GLTF2) -> None:
        self.doc = doc
        self.data = bytearray()

    def view(self, raw: bytes, target: int | None = None) -> int:
        self.data += b"\0" * (-len(self.data) % 4)
        self.doc.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self.data),
                                                  byteLength=len(raw), target=target))
        self.data += raw
        return len(self.doc.bufferViews) - 1

    def accessor(self, arr: np.ndarray, component: int, target: int | None = None,
                 minmax: bool = False, normalized: bool = False) -> int:
        arr = np.ascontiguousarray(arr.reshape(len(arr), -1))
        dtype = {_FLOAT: "<f4", _U8: "<u1", _U16: "<u2", _U32: "<u4"}[component]
        arr = arr.astype(dtype)
        view = self.view(arr.tobytes(), target)
        acc = gl.Accessor(bufferView=view, componentType=component, count=len(arr),
                          type=_TYPES[arr.shape[1]], normalized=normalized or None)
        if minmax:
            acc.min = [float(x) for x in arr.min(axis=0)]
            acc.max = [float(x) for x in arr.max(axis=0)]
        self.doc.accessors.append(acc)
        return len(self.doc.accessors) - 1


def _png(img: np.ndarray) -> bytes:
    """`[H,W,C]` float in [0,1] -> 8-bit PNG bytes (lossless for the 8-bit values)."""
    q = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(q).save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


class _Images:
    """Collects PNG images: embedded as bufferViews (GLB) or named files (.gltf)."""

    def __init__(self, doc: gl.GLTF2, blob: _Blob, stem: str | None) -> None:
        self.doc, self.blob, self.stem = doc, blob, stem
        self.files: list[tuple[str, bytes]] = []
        self._known: dict[bytes, int] = {}  # PNG -> its texture: each image stored once

    def texture(self, img: np.ndarray, name: str) -> int:
        if not self.doc.samplers:  # the one sampler, only where a texture uses it
            self.doc.samplers.append(gl.Sampler(magFilter=9729, minFilter=9987, wrapS=10497,
                                                wrapT=10497))
        data = _png(img)
        if data in self._known:  # materials sharing a map (base/opaque_split.py)
            return self._known[data]
        if self.stem is None:
            image = gl.Image(bufferView=self.blob.view(data), mimeType="image/png", name=name)
        else:
            file = f"{self.stem}_{name}.png"
            self.files.append((file, data))
            image = gl.Image(uri=quote(file), name=name)
        self.doc.images.append(image)
        self.doc.textures.append(gl.Texture(sampler=0, source=len(self.doc.images) - 1))
        self._known[data] = len(self.doc.textures) - 1
        return len(self.doc.textures) - 1


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """`difflod.io.image.linear_to_srgb` in numpy (same formula; no torch thread pool)."""
    x = x.astype(np.float32, copy=False)
    power = np.float32(1.055) * np.maximum(x, np.float32(0.0031308)) ** np.float32(1 / 2.4)
    return np.where(x <= 0.0031308, x * np.float32(12.92),
                    power - np.float32(0.055)).astype(np.float32)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def _material(m: Material, k: int, images: _Images) -> gl.Material:
    pbr = gl.PbrMetallicRoughness()
    out = gl.Material(name=m.name, pbrMetallicRoughness=pbr, alphaMode=m.alpha_mode,
                      doubleSided=bool(m.double_sided))
    if m.alpha_mode == "MASK":
        out.alphaCutoff = float(m.alpha_cutoff)
    kd = _np(m.kd)
    if kd.shape[:2] == (1, 1):
        rgba = list(np.clip(kd[0, 0], 0, 1).astype(float)) + ([1.0] if kd.shape[2] == 3 else [])
        pbr.baseColorFactor = [float(x) for x in rgba]
    else:
        srgb = _linear_to_srgb(np.clip(kd[..., :3], 0, 1))
        img = np.concatenate([srgb, kd[..., 3:]], axis=-1)
        pbr.baseColorTexture = gl.TextureInfo(index=images.texture(img, f"{k}_basecolor"))
    ks = _np(m.ks)
    if ks.shape[:2] == (1, 1):
        pbr.roughnessFactor, pbr.metallicFactor = float(ks[0, 0, 1]), float(ks[0, 0, 2])
    else:
        orm = np.concatenate([np.ones_like(ks[..., :1]), ks[..., 1:3]], axis=-1)
        pbr.metallicFactor = pbr.roughnessFactor = 1.0
        pbr.metallicRoughnessTexture = gl.TextureInfo(index=images.texture(orm, f"{k}_mr"))
    strength = 1.0 - np.clip(ks[..., 0], 0.0, 1.0)
    if float(strength.min()) < 1.0 - 0.5 / 255.0:  # KHR_materials_specular (bsdf.py)
        if ks.shape[:2] == (1, 1):
            spec = {"specularFactor": float(strength[0, 0])}
        else:
            rgba = np.concatenate([np.ones(ks.shape[:2] + (3,), np.float32),
                                   strength[..., None]], axis=-1)
            spec = {"specularTexture": {"index": images.texture(rgba, f"{k}_specular")}}
        out.extensions = {**(out.extensions or {}), "KHR_materials_specular": spec}
    if m.occlusion is not None:
        occ = np.repeat(np.clip(_np(m.occlusion), 0.0, 1.0), 3, axis=-1)
        out.occlusionTexture = gl.OcclusionTextureInfo(index=images.texture(occ, f"{k}_occlusion"))
    if m.normal is not None:
        tex = images.texture(_np(m.normal) * 0.5 + 0.5, f"{k}_normal")
        out.normalTexture = gl.NormalMaterialTexture(index=tex, scale=float(m.normal_scale))
    if m.emissive is not None:
        _emissive(out, m.emissive, k, images)
    if m.displacement is not None:
        warnings.warn(f"material {m.name!r}: glTF has no displacement map; not written",
                      stacklevel=3)
    return out


def _emissive(out: gl.Material, emissive: torch.Tensor, k: int, images: _Images) -> None:
    """emissiveFactor / emissiveTexture (+ KHR_materials_emissive_strength above 1) of
    `out` from the radiance `[H,W,3]`."""
    e = np.maximum(_np(emissive), 0.0)
    peak = float(e.max())
    if not peak > 0.0:
        return
    strength = max(peak, 1.0)
    if e.shape[:2] == (1, 1):
        out.emissiveFactor = [float(x) for x in np.clip(e[0, 0] / strength, 0.0, 1.0)]
    else:
        srgb = _linear_to_srgb(np.clip(e / strength, 0.0, 1.0))
        out.emissiveTexture = gl.TextureInfo(index=images.texture(srgb, f"{k}_emissive"))
        out.emissiveFactor = [1.0, 1.0, 1.0]
    if strength > 1.0:
        out.extensions = {**(out.extensions or {}),
                          "KHR_materials_emissive_strength": {"emissiveStrength": strength}}


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    fallback = np.zeros_like(v)
    fallback[:, 0] = 1.0
    return np.where(n > 1e-12, v / np.maximum(n, 1e-12), fallback)


def _compact(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ranks of the values of `col` `[N]` int64 >= 0: (ids `[N]`, sorted unique values).

    A used-mask and a cumulative sum over the value range: O(N + max), no sort.
    """
    used = np.zeros(int(col.max()) + 1, bool)
    used[col] = True
    rank = np.cumsum(used) - 1
    return rank[col], np.flatnonzero(used)


def _refine(group: np.ndarray, n_groups: int, col: np.ndarray) -> tuple[np.ndarray, int]:
    """Split groups `[N]` (ids in [0, n_groups), every id used) by a second key `col` `[N]`.

    Returns (ids `[N]`, count): ids rank the (group, col) pairs lexicographically,
    exactly as `np.unique(np.stack([group, col], 1), axis=0, return_inverse=True)`.
    Each group takes one of its col values as "primary" (a scatter, O(N)); only
    the corners whose value differs (UV/normal seams, usually few) are sorted.
    """
    span = int(col.max()) + 1
    if n_groups * span >= 2 ** 62:  # packed keys would overflow int64
        _, inverse = np.unique(np.stack([group, col], 1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        return inverse, int(inverse.max()) + 1
    primary = np.empty(n_groups, np.int64)
    primary[group] = col
    seam = col != primary[group]
    if not seam.any():
        return group, n_groups
    seam_keys = group[seam] * span + col[seam]
    primary_keys = np.arange(n_groups, dtype=np.int64) * span + primary
    keys = np.sort(np.concatenate([primary_keys, np.unique(seam_keys)]))
    ids = np.searchsorted(keys, primary_keys)[group]
    ids[seam] = np.searchsorted(keys, seam_keys)
    return ids, len(keys)


def unique_corners(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of `corners` `[N,K]` int64 (>= 0), sorted, and the inverse `[N]` int64.

    The same result as `np.unique(corners, axis=0, return_inverse=True)`, but
    about 20x faster on a million triangles: that sorts N rows of K columns,
    this ranks column 0 without sorting, skips columns equal to column 0 (the
    usual case: one index buffer for all attributes) and sorts only seam corners.
    """
    if corners.ndim != 2 or corners.shape[1] < 1 or corners.dtype != np.int64:
        raise ValueError(f"corners must be [N,K] int64 with K >= 1, got "
                         f"{corners.shape} {corners.dtype}")
    if len(corners) == 0:
        return corners.copy(), np.zeros(0, np.int64)
    ids, first = _compact(corners[:, 0])
    count = len(first)
    refined = False
    for c in range(1, corners.shape[1]):
        col = corners[:, c]
        if not np.array_equal(col, corners[:, 0]):
            ids, count = _refine(ids, count, col)
            refined = True
    if not refined:
        return np.repeat(first[:, None], corners.shape[1], axis=1), ids
    rep = np.empty(count, np.int64)
    rep[ids] = np.arange(len(ids))
    return corners[rep], ids


def _uses(m: Material) -> tuple[bool, bool]:
    """(needs TEXCOORD_0, needs TANGENT): any texture larger than 1x1 (a texture is
    written then), and a normal map. Unused attributes are validator infos."""
    textured = m.normal is not None or m.occlusion is not None or any(
        t.shape[0] * t.shape[1] > 1 for t in (m.kd, m.ks)) or (
        m.emissive is not None and m.emissive.shape[0] * m.emissive.shape[1] > 1
        and float(m.emissive.detach().max()) > 0.0)
    return textured, m.normal is not None


def _vertices(mesh: Mesh, faces: np.ndarray, with_uv: bool = True, with_tangent: bool = True
              ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Unique corner tuples of triangles `faces` `[n]` int64 -> (attributes per glTF
    vertex, `[n,3]` indices into them); UVs and tangents only where asked for."""
    mesh = mesh.replace(**({} if with_uv else {"v_tex": None, "t_tex_idx": None}),
                        **({} if with_tangent and with_uv else {"v_tng": None, "t_tng_idx": None}))
    keys = [mesh.t_pos_idx]
    for values, index in ((mesh.v_tex, mesh.t_tex_idx), (mesh.v_nrm, mesh.t_nrm_idx),
                          (mesh.v_tng, mesh.t_tng_idx)):
        if values is not None and index is not None:
            keys.append(index)
    every = len(faces) == mesh.num_triangles
    corners = np.stack([(k.cpu().numpy() if every else k.cpu().numpy()[faces]).reshape(-1)
                        for k in keys], axis=1)
    unique, inverse = unique_corners(corners)
    attrs = {"POSITION": _np(mesh.v_pos)[unique[:, 0]]}
    col = 1
    if mesh.v_tex is not None:
        attrs["TEXCOORD_0"] = _np(mesh.v_tex)[unique[:, col]]
        col += 1
    if mesh.v_nrm is not None:
        attrs["NORMAL"] = _unit(_np(mesh.v_nrm)[unique[:, col]])
        col += 1
    if mesh.v_tng is not None:
        tng = _np(mesh.v_tng)[unique[:, col]]
        attrs["TANGENT"] = np.concatenate(
            [_unit(tng[:, :3]), np.where(tng[:, 3:] < 0, -1.0, 1.0)], axis=1)
    if mesh.v_color is not None:
        attrs["COLOR_0"] = _np(mesh.v_color)[unique[:, 0]]
    if mesh.v_joints is not None and mesh.v_weights is not None:
        w = _np(mesh.v_weights)[unique[:, 0]]
        # joints of zero weight are written as 0 (the validator asks for it)
        attrs["JOINTS_0"] = np.where(w > 0, mesh.v_joints.cpu().numpy()[unique[:, 0]], 0)
        attrs["WEIGHTS_0"] = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    return attrs, inverse.reshape(-1, 3)


def _skin(doc: gl.GLTF2, blob: _Blob, mesh: Mesh) -> None:
    """Joint nodes under a skeleton root, skin 0 and animation 0 reproducing `mesh.skin`."""
    skin = mesh.skin
    assert skin is not None
    mats = skin.matrices.detach().cpu().double().numpy()  # [N,J,4,4]
    n_keys, n_joints = mats.shape[:2]
    first = len(doc.nodes) + 1
    doc.nodes.append(gl.Node(name="skeleton", children=list(range(first, first + n_joints))))
    trs = np.zeros((n_keys, n_joints, 10))
    worst = 0.0
    for j in range(n_joints):
        prev = None
        for k in range(n_keys):
            t, q, s = decompose(mats[k, j])
            if prev is not None and np.dot(prev, q) < 0:
                q = -q  # keep consecutive keys on the same hemisphere for slerp
            prev = q
            trs[k, j] = np.concatenate([t, q, s])
            worst = max(worst, float(np.abs(trs_matrix(t, q, s) - mats[k, j]).max()))
    if worst > 1e-4:
        warnings.warn(f"skin matrices are not pure TRS (shear); written with error {worst:.2g}",
                      stacklevel=3)
    names = skin.joint_names if len(skin.joint_names) == n_joints else \
        tuple(f"joint{j}" for j in range(n_joints))
    for j in range(n_joints):
        t, q, s = trs[0, j, :3], trs[0, j, 3:7], trs[0, j, 7:]
        doc.nodes.append(gl.Node(name=names[j], translation=[float(x) for x in t],
                                 rotation=[float(x) for x in q], scale=[float(x) for x in s]))
    ibm = blob.accessor(np.tile(np.eye(4, dtype=np.float32).reshape(1, 16), (n_joints, 1)),
                        _FLOAT)
    doc.skins.append(gl.Skin(joints=list(range(first, first + n_joints)),
                             inverseBindMatrices=ibm, skeleton=first - 1))
    times = blob.accessor(skin.times.detach().cpu().numpy().astype(np.float32), _FLOAT,
                          minmax=True)
    anim = gl.Animation(name="skin", samplers=[], channels=[])
    for j in range(n_joints):
        for path, sl in (("translation", slice(0, 3)), ("rotation", slice(3, 7)),
                         ("scale", slice(7, 10))):
            out = blob.accessor(trs[:, j, sl], _FLOAT)
            anim.samplers.append(gl.AnimationSampler(input=times, output=out,
                                                     interpolation="LINEAR"))
            anim.channels.append(gl.AnimationChannel(
                sampler=len(anim.samplers) - 1,
                target=gl.AnimationChannelTarget(node=first + j, path=path)))
    doc.animations.append(anim)


def _mesh_node(doc: gl.GLTF2, blob: _Blob, images: _Images, mesh: Mesh, name: str) -> int:
    """Append `mesh`'s materials, one glTF mesh (a primitive per used material) and a
    node holding it; return the node's index."""
    first = len(doc.materials)
    doc.materials.extend(_material(m, first + k, images) for k, m in enumerate(mesh.materials))
    mat_ids = mesh.material_ids().cpu().numpy()
    prims = []
    for k in range(len(mesh.materials)):
        faces = np.nonzero(mat_ids == k)[0]
        if not len(faces):
            continue
        attrs, tris = _vertices(mesh, faces, *_uses(mesh.materials[k]))
        ids = {}
        for attr, arr in attrs.items():
            if attr == "JOINTS_0":
                comp = _U8 if mesh.skin is not None and mesh.skin.num_joints <= 256 else _U16
                ids[attr] = blob.accessor(arr, comp, _ARRAY)
            else:
                ids[attr] = blob.accessor(arr, _FLOAT, _ARRAY, minmax=attr == "POSITION")
        index_type = _U16 if len(attrs["POSITION"]) <= 65535 else _U32
        prims.append(gl.Primitive(attributes=gl.Attributes(**ids), material=first + k, mode=4,
                                  indices=blob.accessor(tris.reshape(-1), index_type,
                                                        _ELEMENTS)))
    doc.meshes.append(gl.Mesh(name=name, primitives=prims))
    doc.nodes.append(gl.Node(name=name, mesh=len(doc.meshes) - 1))
    return len(doc.nodes) - 1


def _document(meshes: list[Mesh], stem: str | None, coverage: list[float] | None = None
              ) -> tuple[gl.GLTF2, bytes, list[tuple[str, bytes]]]:
    """The glTF document of one mesh, or of an LOD chain (finest first) as MSFT_lod:
    node 0 holds level 0 and lists the other levels' nodes (which are not in the
    scene, so a viewer without MSFT_lod shows level 0), with one screen coverage per
    level in its extras. A skin (level 0's) is shared by every skinned level."""
    doc = gl.GLTF2(asset=gl.Asset(version="2.0", generator="difflod"))
    blob = _Blob(doc)
    images = _Images(doc, blob, stem)
    names = ["mesh"] if len(meshes) == 1 else [f"lod{i}" for i in range(len(meshes))]
    nodes = [_mesh_node(doc, blob, images, m, n) for m, n in zip(meshes, names)]
    used = sorted({e for m in doc.materials for e in (m.extensions or {})})
    if len(meshes) > 1:
        doc.nodes[0].extensions = {"MSFT_lod": {"ids": nodes[1:]}}
        doc.nodes[0].extras = {"MSFT_screencoverage": [float(c) for c in coverage or []]}
        used.append("MSFT_lod")
    if used:
        doc.extensionsUsed = sorted(used)
    roots = [0]
    if meshes[0].skin is not None and meshes[0].v_joints is not None:
        roots.append(len(doc.nodes))  # the skeleton root _skin appends
        _skin(doc, blob, meshes[0])
        for n, m in zip(nodes, meshes):
            if m.v_joints is not None:
                doc.nodes[n].skin = 0
    doc.scenes.append(gl.Scene(nodes=roots))
    doc.scene = 0
    data = bytes(blob.data) + b"\0" * (-len(blob.data) % 4)
    doc.buffers.append(gl.Buffer(byteLength=len(data),
                                 uri=None if stem is None else quote(f"{stem}.bin")))
    return doc, data, images.files


def _glb(json_text: str, data: bytes) -> bytes:
    js = json_text.encode("utf-8")
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + (8 + len(data) if data else 0)
    out = struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
    if data:
        out += struct.pack("<II", len(data), 0x004E4942) + data
    return out


def write(mesh: Mesh, path: Path) -> None:
    """Write `mesh` to `path` (.glb, or .gltf with `<stem>.bin` and PNGs beside it).

    Raises:
        ValueError: the mesh is invalid (see `Mesh.validate`), has no triangles,
            or the suffix is not .gltf/.glb.
    """
    _write([mesh], Path(path))


def write_lods(meshes: list[Mesh], path: Path, coverage: list[float]) -> None:
    """Write an LOD chain, finest first, as one glTF using MSFT_lod.

    Args:
        meshes: the levels, each with fewer triangles than the one before.
        path: .glb, or .gltf with `<stem>.bin` and PNGs beside it.
        coverage: per level, the screen coverage (share of the screen's area the
            model covers) down to which that level is shown; decreasing, the
            last one is where the model stops being drawn (0: never culled).
    Raises:
        ValueError: fewer than two levels, a coverage list of another length or
            not decreasing, or a bad mesh/suffix as `write`.
    """
    if len(meshes) < 2:
        raise ValueError(f"an LOD chain needs at least 2 levels, got {len(meshes)}")
    if len(coverage) != len(meshes):
        raise ValueError(f"coverage needs one value per level ({len(meshes)}), "
                         f"got {len(coverage)}")
    if any(not 0.0 <= c <= 1.0 for c in coverage) or \
            any(a <= b for a, b in pairwise(coverage)):
        raise ValueError(f"coverage must decrease within [0, 1], got {list(coverage)}")
    _write(list(meshes), Path(path), list(coverage))


def _write(meshes: list[Mesh], path: Path, coverage: list[float] | None = None) -> None:
    suffix = path.suffix.lower()
    if suffix not in (".gltf", ".glb"):
        raise ValueError(f"path must end in .gltf or .glb, got {path.name!r}")
    for mesh in meshes:
        mesh.validate()
        if mesh.num_triangles == 0:
            raise ValueError("mesh has no triangles; glTF needs at least one")
    meshes = [with_shading_frame(m) for m in meshes]
    if suffix == ".glb":
        doc, data, _ = _document(meshes, None, coverage)
        payload = _glb(doc.to_json(separators=(",", ":")), data)
        with atomic_paths([path]) as (tmp,):
            tmp.write_bytes(payload)
        return
    doc, data, files = _document(meshes, path.stem, coverage)
    text = json.dumps(json.loads(doc.to_json()), indent=1)
    targets = [path.with_name(f"{path.stem}.bin")] + [path.with_name(f) for f, _ in files] + [path]
    contents = [data] + [d for _, d in files] + [text.encode("utf-8")]
    with atomic_paths(targets) as temps:
        for tmp, content in zip(temps, contents):
            tmp.write_bytes(content)
