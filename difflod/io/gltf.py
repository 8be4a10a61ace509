"""glTF 2.0 (.gltf + .bin + images, and .glb) reader and writer.

`read(path, time=None, animation=None, lod=0) -> Mesh` gathers every triangle
primitive of every node of the default scene (scene 0 if none is marked; all
meshes untransformed if the file has no scene) into one Mesh:

- a node with an MSFT_lod chain stands for its level `lod` (0: itself);

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
`normal_scale`; emissive = emissiveFactor * sRGB->linear(emissiveTexture) *
KHR_materials_emissive_strength (None when it is 0). KHR_texture_transform of the baseColorTexture is applied to
that material's UVs (and its texCoord picks the UV set); difflod has one UV
set, so differing transforms on the other textures are not baked (a warning
says so). Samplers are ignored; other material extensions are dropped with one
warning. Vertex colors: COLOR_0 (VEC3 or VEC4; float, or normalized unsigned
byte/short; linear, as the spec says) becomes `Mesh.v_color` `[V,4]` (alpha 1
for VEC3, white for primitives without one); glTF vertices are welded only
where their colors agree too.

Speed: a 1M-triangle GLB reads in about the time trimesh takes (bench/io.py):
checks run in numpy on the decoded arrays instead of `Mesh.validate` (torch's
thread pool made those cost as much as the whole read on a busy CPU), the
identity node transform is skipped, and the GLB binary chunk is not copied.

`write(mesh, path)` is in `gltf_write`; materials in `gltf_material`; the JSON
document in `gltf_json`; low-level decoding in `gltf_read`;
transforms, animation and skins in `gltf_anim`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from difflod.io.gltf_anim import NodeGraph, attach_skin
from difflod.io.gltf_material import default_material, read_material
from difflod.io.gltf_read import GltfSource
from difflod.io.limits import ReadLimits
from difflod.mesh import Material, Mesh

__all__ = ["read", "write"]

# required extensions whose data this reader handles (or may safely ignore)
_HANDLED_REQUIRED = frozenset({"KHR_texture_transform", "KHR_materials_emissive_strength",
                               "KHR_materials_unlit", "KHR_materials_specular"})


def write(mesh: Mesh, path: Path) -> None:
    """Write `mesh` as .glb (all embedded) or .gltf (+ <stem>.bin + PNGs); atomic."""
    from difflod.io.gltf_write import write as _write

    _write(mesh, Path(path))


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
        n_idx = count
    else:
        n_idx = src.item("accessors", prim.indices, f"indices of {label}").count
        if not isinstance(n_idx, int) or isinstance(n_idx, bool) or n_idx < 0:
            raise src.error(f"accessor {prim.indices} (indices of {label}): count {n_idx!r} "
                            "is not a non-negative integer")
    n_tri = n_idx // 3 if mode == 4 else max(n_idx - 2, 0)
    src.limits.check(src.path, "max_triangles", n_tri,
                     f"{label} declares {n_tri} triangles")
    if prim.indices is None:
        idx = np.arange(count, dtype=np.int64)
    else:
        raw = src.accessor(prim.indices, f"indices of {label}", normalize=False, noun=None)
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
    index = getattr(prim.attributes, name) if prim.attributes is not None else None
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


def _lod_node(src: GltfSource, n: int, lod: int) -> int:
    """The node standing for node `n` at level `lod` of its MSFT_lod chain (n itself at 0)."""
    ext = (src.doc.nodes[n].extensions or {}).get("MSFT_lod")
    if lod == 0 or not isinstance(ext, dict):
        return n
    ids = ext.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise src.error(f"node {n}: MSFT_lod ids must be a list of node indices")
    if lod > len(ids):
        raise src.error(f"node {n}: asked for LOD {lod}, but its MSFT_lod chain has "
                        f"{len(ids) + 1} levels (0-{len(ids)})")
    src.item("nodes", ids[lod - 1], f"node {n} MSFT_lod")
    return ids[lod - 1]


def _instances(src: GltfSource, lod: int = 0) -> list[tuple[int | None, int]]:
    """(node or None, mesh index) of every mesh to read; nodes with an MSFT_lod
    chain are replaced by their level `lod`."""
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
            n = _lod_node(src, n, lod)
            node = doc.nodes[n]
            if node.mesh is not None:
                src.item("meshes", node.mesh, f"node {n}")
                found.append((n, node.mesh))
            stack.extend(reversed(node.children or []))
        return found
    return [(None, m) for m in range(len(doc.meshes or []))]


def read(path: Path, time: float | None = None, animation: int | str | None = None,
         lod: int = 0, limits: ReadLimits | None = None) -> Mesh:
    """Read a .gltf or .glb file into one validated Mesh (see the module docstring).

    Args:
        path: the model file; external buffers/images are looked up beside it.
        time: if given, return the mesh posed at this time (seconds), static.
        animation: index or name of the animation baked into the skin (default 0).
        lod: the level of MSFT_lod chains to read (0, the finest, by default).
        limits: sizes allowed and whether URIs may leave the model's folder
            (default `ReadLimits()`); checked before the arrays are made.
    Raises:
        InputFileError: naming the file and the accessor/mesh/primitive at fault.
    """
    limits = ReadLimits() if limits is None else limits
    src = GltfSource(Path(path), limits)
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
    n_vertices = n_triangles = 0
    for node_index, mesh_index in _instances(src, lod):
        node = doc.nodes[node_index] if node_index is not None else None
        world = rest[node_index] if node_index is not None else np.eye(4)
        skin_index = node.skin if node is not None else None
        for pi, prim in enumerate(doc.meshes[mesh_index].primitives or []):
            label = f"mesh {mesh_index} primitive {pi}"
            if prim.material not in mat_slot:
                if prim.material is None:
                    mat_slot[None] = (len(materials), None, 0)
                    materials.append(default_material())
                else:
                    m, uvm, uv_set = read_material(src, prim.material)
                    mat_slot[prim.material] = (len(materials), uvm, uv_set)
                    materials.append(m)
            slot, uvm, uv_set = mat_slot[prim.material]
            part = _primitive(src, prim, label, uv_set, uvm)
            if part is None:
                continue
            # instances of one mesh are decoded again each: hold the totals too
            n_vertices += len(part["pos"])
            n_triangles += len(part["tris"])
            limits.check(src.path, "max_vertices", n_vertices,
                         f"the scene has {n_vertices} vertices (up to {label})")
            limits.check(src.path, "max_triangles", n_triangles,
                         f"the scene has {n_triangles} triangles (up to {label})")
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
    pos = src.accessor(pos_acc, f"POSITION of {label}", noun="vertices")
    if pos.shape[1] != 3 or pos.dtype != np.float32:
        raise src.error(f"accessor {pos_acc} (POSITION of {label}): must be VEC3 float")
    if not np.isfinite(pos).all():
        raise src.error(f"accessor {pos_acc} (POSITION of {label}): holds NaN or Inf")
    count = len(pos)
    tris = _triangles(src, prim, label, count)
    if tris is None:
        return None
    part: dict[str, Any] = {"pos": pos, "tris": tris}
    part["color"] = _vertex_colors(src, prim, label, count)
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


def _vertex_colors(src: GltfSource, prim: Any, label: str,
                   count: int) -> np.ndarray | None:
    """COLOR_0 as `[count,4]` float32 linear RGBA (alpha 1 for VEC3), or None.

    The spec allows VEC3/VEC4 of float, or normalized unsigned byte/short;
    the values are linear, clamped to [0,1] as the spec requires.
    """
    index = getattr(prim.attributes, "COLOR_0", None) if prim.attributes is not None else None
    if index is None:
        return None
    acc = src.item("accessors", index, f"COLOR_0 of {label}")
    if acc.componentType not in (5126, 5121, 5123) or (
            acc.componentType != 5126 and not acc.normalized):
        raise src.error(f"accessor {index} (COLOR_0 of {label}): must be float or normalized "
                        f"unsigned byte/short, got componentType {acc.componentType!r}"
                        f"{'' if acc.normalized else ' (not normalized)'}")
    rgba = _attribute(src, prim, "COLOR_0", label, count, (3, 4))
    assert rgba is not None
    if rgba.shape[1] == 3:
        rgba = np.concatenate([rgba, np.ones_like(rgba[:, :1])], axis=1)
    return np.clip(rgba, 0.0, 1.0).astype(np.float32)


def _transform(part: dict[str, Any], m: np.ndarray) -> None:
    """Bake the world matrix `m` `[4,4]` into a primitive's arrays (in place).

    The identity (the usual case) is skipped; otherwise positions are
    transformed in float64 and rounded back to float32 once.
    """
    if np.array_equal(m, np.eye(4)):
        return
    lin = m[:3, :3]
    with np.errstate(over="ignore", invalid="ignore"):  # Inf is reported by _assemble
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
    if any(p["color"] is not None for p in parts):
        # primitives without COLOR_0 are white: glTF's default (no tint)
        fields["v_color"] = torch.from_numpy(_cat([
            p["color"] if p["color"] is not None else np.ones((len(p["pos"]), 4), np.float32)
            for p in parts]))
    return Mesh(**fields)


def _weld_positions(mesh: Mesh) -> Mesh:
    """Share one position index among glTF vertices with bit-identical positions
    (and joints and weights, and vertex colors), keeping UV, normal and tangent indices per vertex.

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
    if mesh.v_color is not None:
        cols.append(mesh.v_color.numpy().view(np.uint32).astype(np.int64))
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
    if mesh.v_color is not None:
        fields["v_color"] = mesh.v_color[keep]
    return mesh.replace(**fields)


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate to one C-contiguous float32 array (no copy for a single one)."""
    out = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return np.ascontiguousarray(out, np.float32)
