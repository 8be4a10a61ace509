"""glTF 2.0 (.gltf + .bin + images, and .glb) reader and writer.

`read(path, time=None, animation=None) -> Mesh` gathers every triangle
primitive of every node of the default scene (scene 0 if none is marked; all
meshes untransformed if the file has no scene) into one Mesh:

- node transforms (matrix or TRS, through the hierarchy) are baked into the
  positions; normals use the inverse-transpose, tangents the matrix, and a
  mirroring transform flips the tangent handedness and the triangle winding;
- TRIANGLE_STRIP/FAN are converted, POINTS/LINES skipped with a warning;
- one material per glTF material used (`t_mat` indexes `Mesh.materials`);
  primitives without one get `Material()`. See "Materials";
- every glTF vertex is one entry of each attribute, so `t_tex_idx`,
  `t_nrm_idx` and `t_tng_idx` are one shared tensor; glTF vertices with
  bit-identical positions (and joints and weights) are then welded into one
  position (`t_pos_idx`), giving back the connectivity that glTF's vertex
  splitting at UV seams and material borders took away (Mesh tensors are
  never modified in place);
- skins: a primitive of a node with `skin` keeps its bind-space positions (the
  spec ignores that node's transform); `Skin.matrices` = joint world @ inverse
  bind, baked at the union of the keyframe times of animation `animation`
  (index or name; default 0), or one rest-pose key when there is none.
  Several skins are concatenated; when a skinned model also has static
  primitives, each of their nodes becomes an extra rigid joint (following
  that node's animation). `time=t` returns the mesh posed at t by
  `difflod.geometry.skinning.skin_mesh` (a static mesh, without skin).

Materials: kd = sRGB->linear(baseColorTexture) * baseColorFactor (alpha as a 4th
channel unless OPAQUE); ks = (1 - s, roughness G * factor, metallic B *
factor), s = KHR_materials_specular's specularFactor * specularTexture alpha
(1 when absent), textures resampled to the largest (shading/bsdf.py gives s
its glTF meaning); occlusion = 1 - strength * (1 - occlusionTexture R), its
own map (ambient only: never shaded); normal = normalTexture * 2 - 1 with
`normal_scale`. KHR_texture_transform of the baseColorTexture is applied to
that material's UVs (and its texCoord picks the UV set); difflod has one UV
set, so differing transforms on the other textures are not baked (a warning
says so). Samplers are ignored; emissive, other material extensions and
vertex colors (COLOR_0) are dropped with one warning.

Speed: a 1M-triangle GLB reads in about the time trimesh takes (bench/io.py):
checks run in numpy on the decoded arrays instead of `Mesh.validate` (torch's
thread pool made those cost as much as the whole read on a busy CPU), the
identity node transform is skipped, and the GLB binary chunk is not copied.

`write(mesh, path)` is in `gltf_write`; low-level decoding in `gltf_read`;
transforms, animation and skins in `gltf_anim`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib as gl
import torch
import torch.nn.functional as F

from difflod.io.gltf_anim import NodeGraph, attach_skin
from difflod.io.gltf_read import GltfSource
from difflod.mesh import Material, Mesh

__all__ = ["read", "write"]

# required extensions whose data this reader handles (or may safely ignore)
_HANDLED_REQUIRED = frozenset({"KHR_texture_transform", "KHR_materials_emissive_strength",
                               "KHR_materials_unlit", "KHR_materials_specular"})
# material extensions read (or without effect once emissive is dropped)
_MATERIAL_EXTENSIONS = frozenset({"KHR_materials_specular", "KHR_materials_emissive_strength"})


def write(mesh: Mesh, path: Path) -> None:
    """Write `mesh` as .glb (all embedded) or .gltf (+ <stem>.bin + PNGs); atomic."""
    from difflod.io.gltf_write import write as _write

    _write(mesh, Path(path))


# ---- materials ------------------------------------------------------------------

def _default_material() -> Material:
    return Material()


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """`difflod.io.image.srgb_to_linear` in numpy (same formula; no torch thread pool)."""
    x = x.astype(np.float32, copy=False)
    return np.where(x <= 0.04045, x / np.float32(12.92),
                    ((np.maximum(x, np.float32(0.04045)) + np.float32(0.055))
                     / np.float32(1.055)) ** np.float32(2.4)).astype(np.float32)


def _uv_matrix(ext: dict) -> np.ndarray:
    """KHR_texture_transform -> `[3,3]` acting on (u, v, 1): T(offset) R(rotation) S(scale)."""
    ox, oy = ext.get("offset", [0.0, 0.0])
    sx, sy = ext.get("scale", [1.0, 1.0])
    c, s = np.cos(float(ext.get("rotation", 0.0))), np.sin(float(ext.get("rotation", 0.0)))
    return (np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]], np.float64)
            @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) @ np.diag([sx, sy, 1.0]))


def _transform_of(info: Any) -> tuple[np.ndarray | None, int]:
    if info is None:
        return None, 0
    ext = (info.extensions or {}).get("KHR_texture_transform")
    tex_coord = info.texCoord or 0
    if not ext:
        return None, tex_coord
    return _uv_matrix(ext), int(ext.get("texCoord", tex_coord))


def _texture(src: GltfSource, info: Any, what: str) -> np.ndarray | None:
    if info is None:
        return None
    tex = src.item("textures", info.index, what)
    if tex.source is None:
        raise src.error(f"texture {info.index} ({what}): has no PNG/JPEG source")
    return src.image(tex.source, f"texture {info.index}")


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == hw:
        return img
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False)[0] \
        .permute(1, 2, 0).numpy()


def _texture_info(raw: Any) -> gl.TextureInfo | None:
    """An extension's textureInfo (a plain dict in pygltflib) as a TextureInfo."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("index"), int):
        return gl.TextureInfo(index=-1)  # named as out of range by _texture
    return gl.TextureInfo(index=raw["index"], texCoord=raw.get("texCoord"),
                          extensions=raw.get("extensions"))


def _warn_unsupported(src: GltfSource, mat: Any, what: str) -> None:
    """One warning naming the material features difflod drops."""
    dropped = []
    emissive = mat.emissiveFactor or [0.0, 0.0, 0.0]
    if mat.emissiveTexture is not None or any(float(x) != 0.0 for x in emissive):
        dropped.append("emissive")
    others = sorted(set(mat.extensions or {}) - _MATERIAL_EXTENSIONS)
    dropped += others
    if dropped:
        warnings.warn(f"{src.path}: {what} ({mat.name or 'unnamed'}): difflod does not "
                      f"support {', '.join(dropped)}; rendered and written without it",
                      stacklevel=5)


def _material(src: GltfSource, index: int) -> tuple[Material, np.ndarray | None, int]:
    """(Material, UV transform `[3,3]` or None, TEXCOORD set) of glTF material `index`."""
    mat = src.item("materials", index, "primitive material")
    what = f"material {index}"
    pbr = mat.pbrMetallicRoughness
    factor = np.asarray(pbr.baseColorFactor if pbr and pbr.baseColorFactor is not None
                        else [1, 1, 1, 1], np.float32)
    metal_f = float(pbr.metallicFactor if pbr and pbr.metallicFactor is not None else 1.0)
    rough_f = float(pbr.roughnessFactor if pbr and pbr.roughnessFactor is not None else 1.0)
    if factor.shape != (4,) or not np.isfinite(factor).all():
        raise src.error(f"{what}: baseColorFactor must be 4 finite numbers")
    alpha_mode = mat.alphaMode or "OPAQUE"
    if alpha_mode not in ("OPAQUE", "MASK", "BLEND"):
        raise src.error(f"{what}: unknown alphaMode {alpha_mode!r}")
    base_info = pbr.baseColorTexture if pbr else None
    mr_info = pbr.metallicRoughnessTexture if pbr else None

    base = _texture(src, base_info, f"baseColorTexture of {what}")
    if base is None:
        kd = np.broadcast_to(factor, (1, 1, 4)).copy()
    else:
        rgb = _srgb_to_linear(np.clip(base[..., :3], 0, 1))
        alpha = base[..., 3:4] if base.shape[-1] == 4 else np.ones_like(base[..., :1])
        kd = np.concatenate([rgb, alpha], axis=-1) * factor
    if alpha_mode == "OPAQUE":
        kd = kd[..., :3]

    mr = _texture(src, mr_info, f"metallicRoughnessTexture of {what}")
    spec_ext = (mat.extensions or {}).get("KHR_materials_specular") or {}
    if not isinstance(spec_ext, dict):
        raise src.error(f"{what}: KHR_materials_specular must be an object")
    spec_info = _texture_info(spec_ext.get("specularTexture"))
    spec = _texture(src, spec_info, f"specularTexture of {what}")
    spec_f = spec_ext.get("specularFactor", 1.0)
    if isinstance(spec_f, bool) or not isinstance(spec_f, (int, float)) \
            or not 0.0 <= spec_f <= 1.0:
        raise src.error(f"{what}: KHR_materials_specular specularFactor must be a number "
                        f"in [0,1], got {spec_f!r}")
    hw = max([t.shape[:2] for t in (mr, spec) if t is not None] or [(1, 1)],
             key=lambda s: s[0] * s[1])
    ks = np.empty((hw[0], hw[1], 3), np.float32)
    # channel 0 = 1 - KHR_materials_specular strength (specularTexture's alpha)
    ks[..., 0] = 1.0 - spec_f * (_resize(spec, hw)[..., 3] if spec is not None
                                 and spec.shape[-1] == 4 else 1.0)
    if mr is None:
        ks[..., 1], ks[..., 2] = rough_f, metal_f
    else:
        mr = _resize(mr, hw)
        ks[..., 1], ks[..., 2] = mr[..., 1] * rough_f, mr[..., 2] * metal_f

    occlusion = None
    occ = _texture(src, mat.occlusionTexture, f"occlusionTexture of {what}")
    if occ is not None:
        strength = mat.occlusionTexture.strength
        strength = 1.0 if strength is None else float(strength)
        occlusion = torch.from_numpy(np.ascontiguousarray(
            1.0 - strength * (1.0 - occ[..., 0:1]), np.float32))
    _warn_unsupported(src, mat, what)

    normal, normal_scale = None, 1.0
    nimg = _texture(src, mat.normalTexture, f"normalTexture of {what}")
    if nimg is not None:
        normal = torch.from_numpy(np.ascontiguousarray(nimg[..., :3] * 2.0 - 1.0))
        scale = mat.normalTexture.scale
        normal_scale = 1.0 if scale is None else float(scale)

    transform, uv_set = _transform_of(base_info)
    for info in (mr_info, mat.occlusionTexture, mat.normalTexture, spec_info):
        other = _transform_of(info)[0] if info is not None else transform
        same = (other is None and transform is None) or (
            other is not None and transform is not None and np.allclose(other, transform))
        if not same:
            warnings.warn(f"{src.path}: {what}: textures use different KHR_texture_transform;"
                          " only the baseColorTexture one is applied to the UVs", stacklevel=4)
            break
    material = Material(
        name=mat.name or f"material{index}",
        kd=torch.from_numpy(np.ascontiguousarray(kd, np.float32)), ks=torch.from_numpy(ks),
        normal=normal, normal_scale=normal_scale, occlusion=occlusion, alpha_mode=alpha_mode,
        alpha_cutoff=float(mat.alphaCutoff if mat.alphaCutoff is not None else 0.5),
        double_sided=bool(mat.doubleSided))
    # Material.validate's checks, in numpy (torch's cost as much as reading the mesh)
    for name, arr in (("baseColor", kd), ("metallicRoughness/specular", ks),
                      ("normalTexture.scale", np.float32(normal_scale))):
        if not np.isfinite(arr).all():
            raise src.error(f"{what}: {name} values are not finite (check the factors)")
    if not 0.0 <= material.alpha_cutoff <= 1.0:
        raise src.error(f"{what}: alphaCutoff must be in [0,1], got {material.alpha_cutoff}")
    return material, transform, uv_set


# ---- primitives -------------------------------------------------------------------

def _triangles(src: GltfSource, prim: Any, label: str, count: int) -> np.ndarray | None:
    """`[F,3]` int64 triangles of a primitive, or None when it is not triangles."""
    mode = 4 if prim.mode is None else prim.mode
    if mode in (0, 1, 2, 3):
        warnings.warn(f"{src.path}: {label}: points/lines (mode {mode}) skipped", stacklevel=4)
        return None
    if mode not in (4, 5, 6):
        raise src.error(f"{label}: unknown primitive mode {mode!r}")
    if prim.indices is None:
        idx = np.arange(count, dtype=np.int64)
    else:
        raw = src.accessor(prim.indices, f"indices of {label}", normalize=False)
        if raw.shape[1] != 1 or raw.dtype.kind != "u":
            raise src.error(f"accessor {prim.indices} (indices of {label}): must be SCALAR "
                            f"unsigned byte/short/int, got {raw.shape[1]} x {raw.dtype}")
        idx = raw[:, 0].astype(np.int64)
        if len(idx) and int(idx.max()) >= count:
            raise src.error(f"accessor {prim.indices} (indices of {label}): index "
                            f"{int(idx.max())} out of range for {count} vertices")
    if mode == 4:
        n = len(idx) - len(idx) % 3
        return idx[:n].reshape(-1, 3)
    k = np.arange(max(len(idx) - 2, 0))
    if mode == 5:  # strip: alternate the winding of odd triangles
        odd = k % 2
        return np.stack([idx[k], idx[k + 1 + odd], idx[k + 2 - odd]], axis=1)
    return np.stack([idx[k + 1], idx[k + 2], np.full_like(k, idx[0])], axis=1)


def _attribute(src: GltfSource, prim: Any, name: str, label: str, count: int,
               widths: tuple[int, ...], float_only: bool = True) -> np.ndarray | None:
    index = (prim.attributes.__dict__ if hasattr(prim.attributes, "__dict__")
             else prim.attributes).get(name)
    if index is None:
        return None
    arr = src.accessor(index, f"{name} of {label}", normalize=float_only)
    if arr.shape[1] not in widths or arr.shape[0] != count or (
            float_only and arr.dtype != np.float32):
        raise src.error(f"accessor {index} ({name} of {label}): expected {count} elements "
                        f"of width {widths}{' (float or normalized)' if float_only else ''}, "
                        f"got {arr.shape[0]} x {arr.shape[1]} {arr.dtype}")
    if float_only and not np.isfinite(arr).all():
        raise src.error(f"accessor {index} ({name} of {label}): holds NaN or Inf")
    return arr


def _instances(src: GltfSource) -> list[tuple[int | None, int]]:
    """(node or None, mesh index) of every mesh to read."""
    doc = src.doc
    if doc.scenes:
        scene_index = doc.scene if doc.scene is not None else 0
        scene = src.item("scenes", scene_index, "scene")
        found, stack = [], list(scene.nodes or [])[::-1]
        for root in stack:
            src.item("nodes", root, f"scene {scene_index}")
        seen: set[int] = set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            node = doc.nodes[n]
            if node.mesh is not None:
                src.item("meshes", node.mesh, f"node {n}")
                found.append((n, node.mesh))
            stack.extend(reversed(node.children or []))
        return found
    return [(None, m) for m in range(len(doc.meshes or []))]


def read(path: Path, time: float | None = None, animation: int | str | None = None) -> Mesh:
    """Read a .gltf or .glb file into one validated Mesh (see the module docstring).

    Args:
        path: the model file; external buffers/images are looked up beside it.
        time: if given, return the mesh posed at this time (seconds), static.
        animation: index or name of the animation baked into the skin (default 0).
    Raises:
        InputFileError: naming the file and the accessor/mesh/primitive at fault.
    """
    src = GltfSource(Path(path))
    doc = src.doc
    unsupported = sorted(set(doc.extensionsRequired or []) - _HANDLED_REQUIRED)
    if unsupported:
        raise src.error(f"extensionsRequired lists {unsupported}, which difflod cannot read "
                        "(e.g. compressed geometry or textures); export without them")
    graph = NodeGraph(list(doc.nodes or []), src.error)
    rest = graph.world()
    materials: list[Material] = []
    mat_slot: dict[int | None, tuple[int, np.ndarray | None, int]] = {}
    parts: list[dict[str, Any]] = []
    static_nodes: list[int | None] = []
    skins: list[int] = []
    for node_index, mesh_index in _instances(src):
        node = doc.nodes[node_index] if node_index is not None else None
        world = rest[node_index] if node_index is not None else np.eye(4)
        skin_index = node.skin if node is not None else None
        for pi, prim in enumerate(doc.meshes[mesh_index].primitives or []):
            label = f"mesh {mesh_index} primitive {pi}"
            if prim.material not in mat_slot:
                if prim.material is None:
                    mat_slot[None] = (len(materials), None, 0)
                    materials.append(_default_material())
                else:
                    m, uvm, uv_set = _material(src, prim.material)
                    mat_slot[prim.material] = (len(materials), uvm, uv_set)
                    materials.append(m)
            slot, uvm, uv_set = mat_slot[prim.material]
            part = _primitive(src, prim, label, uv_set, uvm)
            if part is None:
                continue
            if skin_index is not None and part.get("joints") is not None:
                if skin_index not in skins:
                    skins.append(skin_index)
                part["skin"] = skin_index
            else:
                part.pop("joints", None), part.pop("weights", None)
                _transform(part, world)
                if node_index not in static_nodes:
                    static_nodes.append(node_index)
                part["static"] = node_index
            part["mat"] = slot
            parts.append(part)
    if not parts:
        raise src.error("no triangle primitives in the scene")
    if any(p["colors"] for p in parts):
        warnings.warn(f"{src.path}: difflod does not support vertex colors (COLOR_0); "
                      "rendered and written without them", stacklevel=2)
    mesh = _assemble(src, parts, materials)
    if skins:
        mesh = attach_skin(src, graph, mesh, parts, skins, static_nodes, animation)
        try:
            mesh.skin.validate()  # type: ignore[union-attr]
        except ValueError as exc:
            raise src.error(str(exc)) from None
    mesh = _weld_positions(mesh)
    if time is not None and mesh.skin is not None:
        from difflod.geometry.skinning import skin_mesh

        mesh = skin_mesh(mesh, float(time))
    return mesh


def _primitive(src: GltfSource, prim: Any, label: str, uv_set: int,
               uvm: np.ndarray | None) -> dict[str, Any] | None:
    pos_acc = (prim.attributes.POSITION if prim.attributes is not None else None)
    if pos_acc is None:
        raise src.error(f"{label}: has no POSITION attribute")
    pos = src.accessor(pos_acc, f"POSITION of {label}")
    if pos.shape[1] != 3 or pos.dtype != np.float32:
        raise src.error(f"accessor {pos_acc} (POSITION of {label}): must be VEC3 float")
    if not np.isfinite(pos).all():
        raise src.error(f"accessor {pos_acc} (POSITION of {label}): holds NaN or Inf")
    count = len(pos)
    tris = _triangles(src, prim, label, count)
    if tris is None:
        return None
    part: dict[str, Any] = {"pos": pos, "tris": tris,
                            "colors": getattr(prim.attributes, "COLOR_0", None) is not None}
    part["nrm"] = _attribute(src, prim, "NORMAL", label, count, (3,))
    part["tng"] = _attribute(src, prim, "TANGENT", label, count, (4,))
    uv = _attribute(src, prim, f"TEXCOORD_{uv_set}", label, count, (2,))
    if uv is not None and uvm is not None:
        uv = (np.concatenate([uv, np.ones_like(uv[:, :1])], 1) @ uvm.T)[:, :2]
    part["uv"] = uv
    joints = _attribute(src, prim, "JOINTS_0", label, count, (4,), float_only=False)
    if joints is not None:
        if joints.dtype not in (np.uint8, np.uint16):
            raise src.error(f"{label}: JOINTS_0 must be unsigned byte or short, "
                            f"got {joints.dtype}")
        weights = _attribute(src, prim, "WEIGHTS_0", label, count, (4,))
        if weights is None:
            raise src.error(f"{label}: has JOINTS_0 but no WEIGHTS_0")
        weights = np.maximum(weights, 0.0)
        total = weights.sum(axis=1, keepdims=True)
        weights = np.where(total > 0, weights / np.where(total > 0, total, 1.0),
                           np.array([1.0, 0, 0, 0], np.float32))
        part["joints"], part["weights"] = joints.astype(np.int64), weights.astype(np.float32)
    return part


def _transform(part: dict[str, Any], m: np.ndarray) -> None:
    """Bake the world matrix `m` `[4,4]` into a primitive's arrays (in place).

    The identity (the usual case) is skipped; otherwise positions are
    transformed in float64 and rounded back to float32 once.
    """
    if np.array_equal(m, np.eye(4)):
        return
    lin = m[:3, :3]
    with np.errstate(over="ignore"):  # overflow to Inf is reported by _assemble
        part["pos"] = (part["pos"] @ lin.T + m[:3, 3]).astype(np.float32)
    det = np.linalg.det(lin)
    if part["nrm"] is not None:
        n = part["nrm"] @ np.linalg.inv(lin)  # rows: (inv(lin).T @ n).T
        part["nrm"] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    if part["tng"] is not None:
        t = part["tng"][:, :3] @ lin.T
        t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
        w = part["tng"][:, 3:] * (-1.0 if det < 0 else 1.0)
        part["tng"] = np.concatenate([t, w], axis=1)
    if det < 0:
        part["tris"] = part["tris"][:, [0, 2, 1]]


def _finite(src: GltfSource, name: str, arr: np.ndarray) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise src.error(f"{name} holds NaN or Inf after applying the node transforms")
    return arr


def _assemble(src: GltfSource, parts: list[dict[str, Any]],
              materials: list[Material]) -> Mesh:
    """One Mesh from the primitives; all `t_*_idx` are the same (shared) tensor.

    Everything `Mesh.validate` checks is guaranteed here with numpy (index
    ranges per primitive in `_triangles`, finiteness per accessor and again
    after transforms, materials in `_material`): torch's validation costs
    about as much as the whole read on a 1M-triangle file.
    """
    if len(parts) == 1:
        tris = parts[0]["tris"]
    else:
        offsets = np.cumsum([0] + [len(p["pos"]) for p in parts])
        tris = np.concatenate([p["tris"] + o for p, o in zip(parts, offsets)])
    t_idx = torch.from_numpy(np.ascontiguousarray(tris, np.int64))
    fields: dict[str, Any] = {
        "v_pos": torch.from_numpy(_finite(src, "POSITION", _cat([p["pos"] for p in parts]))),
        "t_pos_idx": t_idx,
        "t_mat": torch.from_numpy(np.concatenate(
            [np.full(len(p["tris"]), p["mat"], np.int64) for p in parts])),
        "materials": tuple(materials)}
    for key, attr, idx, width in (("uv", "v_tex", "t_tex_idx", 2),
                                  ("nrm", "v_nrm", "t_nrm_idx", 3),
                                  ("tng", "v_tng", "t_tng_idx", 4)):
        have = [p[key] is not None for p in parts]
        # UVs and tangents may be missing where a material has no texture / normal
        # map (zeros, resp. +X, then: nothing reads them); normals are needed
        # everywhere, and tangents wherever a normal map is (else difflod makes them)
        needed = [key == "nrm" or (key == "tng" and materials[p["mat"]].normal is not None)
                  for p in parts]
        if not any(have) or any(n and not h for n, h in zip(needed, have)):
            if any(have):
                warnings.warn(f"{src.path}: only some primitives have {key}; dropped",
                              stacklevel=3)
            continue
        filler = np.array([1.0, 0.0, 0.0, 1.0] if key == "tng" else [0.0] * width, np.float32)
        arr = _cat([p[key] if p[key] is not None
                    else np.tile(filler, (len(p["pos"]), 1)) for p in parts])
        fields[attr] = torch.from_numpy(_finite(src, attr, arr))
        fields[idx] = t_idx
    return Mesh(**fields)


def _weld_positions(mesh: Mesh) -> Mesh:
    """Share one position index among glTF vertices with bit-identical positions
    (and joints and weights), keeping UV, normal and tangent indices per vertex.

    glTF must split a vertex wherever any attribute differs (UV seams, material
    borders); welding gives back the surface's connectivity, so that a mesh read
    from a file renders like the one written (antialiasing finds silhouettes by
    edge adjacency: a split seam would be taken for one) and computed normals
    stay smooth across seams. Nothing moves: only `t_pos_idx` changes.
    """
    cols = [mesh.v_pos.numpy().view(np.uint32).astype(np.int64)]
    if mesh.v_joints is not None and mesh.v_weights is not None:
        cols += [mesh.v_joints.numpy().astype(np.int64),
                 mesh.v_weights.numpy().view(np.uint32).astype(np.int64)]
    keys = np.ascontiguousarray(np.concatenate(cols, axis=1))
    rows = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    if len(first) == len(keys):
        return mesh
    order = np.argsort(first)          # number the groups in order of first use
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inverse = rank[inverse.reshape(-1)]
    keep = torch.from_numpy(first[order])
    fields: dict[str, Any] = {
        "v_pos": mesh.v_pos[keep],
        "t_pos_idx": torch.from_numpy(inverse)[mesh.t_pos_idx]}
    if mesh.v_joints is not None and mesh.v_weights is not None:
        fields["v_joints"], fields["v_weights"] = mesh.v_joints[keep], mesh.v_weights[keep]
    return mesh.replace(**fields)


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate to one C-contiguous float32 array (no copy for a single one)."""
    out = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return np.ascontiguousarray(out, np.float32)
