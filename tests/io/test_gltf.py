"""glTF reader/writer: round trips, hand-built files (pygltflib), errors, independent readers."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
import torch
import trimesh

from difflod.errors import InputFileError
from difflod.geometry.skinning import skin_mesh
from difflod.io import gltf
from difflod.mesh import Material, Mesh, Skin

# ---- procedural data ---------------------------------------------------------------

def _grid_mesh(n: int = 3, seed: int = 0) -> Mesh:
    """An n x n quad grid in z=0 with wavy heights, UVs, normals, tangents, 2 materials."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, n + 1), torch.linspace(0, 1, n + 1),
                            indexing="ij")
    pos = torch.stack([xs, ys, 0.1 * torch.sin(3 * xs) * ys], -1).reshape(-1, 3)
    uv = torch.stack([xs, ys], -1).reshape(-1, 2)
    tris = []
    for i in range(n):
        for j in range(n):
            a = i * (n + 1) + j
            tris += [[a, a + 1, a + n + 2], [a, a + n + 2, a + n + 1]]
    t = torch.tensor(tris, dtype=torch.int64)
    nrm = torch.nn.functional.normalize(torch.randn(len(pos), 3, generator=g) * 0.2
                                        + torch.tensor([0, 0, 1.0]), dim=1)
    tng = torch.cat([torch.nn.functional.normalize(torch.cross(
        nrm, torch.tensor([[0, 1.0, 0]]).expand_as(nrm), dim=1), dim=1),
        torch.where(torch.arange(len(pos))[:, None] % 2 == 0, 1.0, -1.0)], dim=1)
    mats = (
        Material(name="textured", kd=torch.rand(8, 8, 4, generator=g),
                 ks=torch.rand(4, 4, 3, generator=g),
                 normal=torch.nn.functional.normalize(
                     torch.rand(4, 4, 3, generator=g) - torch.tensor([0.5, 0.5, -0.5]), dim=-1),
                 normal_scale=0.7, alpha_mode="MASK", alpha_cutoff=0.25, double_sided=False),
        Material(name="flat", kd=torch.tensor([[[0.2, 0.4, 0.6]]]),
                 ks=torch.tensor([[[0.0, 0.3, 0.8]]]), alpha_mode="OPAQUE"),
    )
    t_mat = torch.arange(len(t)) % 2
    return Mesh(v_pos=pos, t_pos_idx=t, v_tex=uv, t_tex_idx=t.clone(), v_nrm=nrm,
                t_nrm_idx=t.clone(), v_tng=tng, t_tng_idx=t.clone(), t_mat=t_mat,
                materials=mats).validate()


def _corners(mesh: Mesh, attr: str, idx: str, order: torch.Tensor) -> torch.Tensor:
    return getattr(mesh, attr)[getattr(mesh, idx)[order]]


def _skinned_mesh() -> Mesh:
    """A bar along x bound to two joints; joint 1 rotates and moves over 3 keys."""
    base = _grid_mesh(2)
    x = base.v_pos[:, 0]
    w1 = x.clamp(0, 1)
    weights = torch.stack([1 - w1, w1, torch.zeros_like(x), torch.zeros_like(x)], 1)
    joints = torch.tensor([[0, 1, 0, 0]]).expand(len(x), 4).clone()
    mats = []
    for k, ang in enumerate([0.0, 0.6, 1.2]):
        c, s = math.cos(ang), math.sin(ang)
        m1 = torch.tensor([[c, -s, 0, 0.1 * k], [s, c, 0, 0], [0, 0, 1, 0.2], [0, 0, 0, 1]])
        m0 = torch.eye(4)
        m0[:3, 3] = torch.tensor([0.0, 0.05 * k, 0.0])
        m0[:3, :3] *= 1.0 + 0.1 * k
        mats.append(torch.stack([m0, m1]))
    skin = Skin(times=torch.tensor([0.0, 0.5, 1.25]), matrices=torch.stack(mats),
                joint_names=("root", "tip"))
    return base.replace(v_joints=joints, v_weights=weights, skin=skin).validate()


class Builder:
    """A hand-built glTF: pygltflib document plus one binary buffer."""

    def __init__(self) -> None:
        self.doc = gl.GLTF2(asset=gl.Asset(version="2.0"))
        self.blob = bytearray()

    def view(self, raw: bytes, stride: int | None = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        self.doc.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self.blob),
                                                  byteLength=len(raw), byteStride=stride))
        self.blob += raw
        return len(self.doc.bufferViews) - 1

    def acc(self, arr: np.ndarray, comp: int, type_: str, **kw: object) -> int:
        arr = np.ascontiguousarray(arr)
        view = kw.pop("view", None)
        if view is None and "no_view" not in kw:
            view = self.view(arr.tobytes())
        kw.pop("no_view", None)
        self.doc.accessors.append(gl.Accessor(bufferView=view, componentType=comp,
                                              count=int(kw.pop("count", len(arr))),
                                              type=type_, **kw))
        return len(self.doc.accessors) - 1

    def triangle_mesh(self, pos: np.ndarray, indices: np.ndarray | None = None,
                      index_comp: int = 5125, **attrs: int) -> int:
        a = {"POSITION": self.acc(pos.astype(np.float32), 5126, "VEC3"), **attrs}
        prim = gl.Primitive(attributes=gl.Attributes(**a))
        if indices is not None:
            dt = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32}[index_comp]
            prim.indices = self.acc(indices.astype(dt).reshape(-1), index_comp, "SCALAR")
        self.doc.meshes.append(gl.Mesh(primitives=[prim]))
        return len(self.doc.meshes) - 1

    def save(self, path: Path, data_uri: bool = True) -> Path:
        data = bytes(self.blob)
        if data_uri:
            uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
        else:
            uri = path.stem + ".bin"
            (path.parent / uri).write_bytes(data)
        self.doc.buffers = [gl.Buffer(byteLength=len(data), uri=uri)]
        path.write_text(self.doc.to_json())
        return path


TRI = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)


# ---- round trips -----------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".gltf", ".glb"])
def test_round_trip_geometry_and_materials(tmp_path: Path, suffix: str) -> None:
    mesh = _grid_mesh()
    path = tmp_path / f"model{suffix}"
    gltf.write(mesh, path)
    back = gltf.read(path)
    order = torch.argsort(mesh.t_mat, stable=True)  # the writer groups by material
    assert back.num_triangles == mesh.num_triangles
    assert torch.equal(back.t_mat, mesh.t_mat[order])
    textured = back.t_mat == 0  # UVs and tangents are written for the textured material only
    for attr, idx, tol in (("v_pos", "t_pos_idx", 1e-6), ("v_tex", "t_tex_idx", 1e-6),
                           ("v_nrm", "t_nrm_idx", 1e-6), ("v_tng", "t_tng_idx", 1e-6)):
        got = _corners(back, attr, idx, torch.arange(back.num_triangles))
        want = _corners(mesh, attr, idx, order)
        if attr in ("v_tex", "v_tng"):
            got, want = got[textured], want[textured]
        assert torch.allclose(got, want, atol=tol), attr
    # vertices were welded: 2 materials x unique corners, not 3 per triangle
    assert back.num_vertices < 3 * back.num_triangles
    m0, m1 = back.materials
    src0 = mesh.materials[0]
    assert (m0.name, m0.alpha_mode, m0.alpha_cutoff, m0.double_sided) == \
        ("textured", "MASK", 0.25, False)
    assert m0.kd.shape == (8, 8, 4)
    assert torch.allclose(m0.kd[..., 3], src0.kd[..., 3], atol=0.5 / 255 + 1e-6)
    assert torch.allclose(m0.kd[..., :3], src0.kd[..., :3], atol=0.01)  # 8-bit sRGB
    assert torch.allclose(m0.ks, src0.ks, atol=0.5 / 255 + 1e-6)
    assert m0.normal is not None and m0.normal_scale == pytest.approx(0.7)
    assert torch.allclose(m0.normal, src0.normal, atol=1.0 / 255 + 1e-6)
    assert m1.kd.shape == (1, 1, 3) and torch.allclose(m1.kd, mesh.materials[1].kd)
    assert torch.allclose(m1.ks, mesh.materials[1].ks)
    assert m1.normal is None and m1.alpha_mode == "OPAQUE"
    if suffix == ".gltf":
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == ["model.bin", "model.gltf", "model_0_basecolor.png",
                         "model_0_mr.png", "model_0_normal.png", "model_0_specular.png"]


@pytest.mark.parametrize("suffix", [".gltf", ".glb"])
def test_round_trip_skin_animation(tmp_path: Path, suffix: str) -> None:
    mesh = _skinned_mesh()
    path = tmp_path / f"skinned{suffix}"
    gltf.write(mesh, path)
    back = gltf.read(path)
    assert back.skin is not None and back.skin.num_joints == 2
    assert torch.allclose(back.skin.times, mesh.skin.times)
    assert back.skin.joint_names == ("root", "tip")
    order = torch.arange(mesh.num_triangles)
    order = torch.argsort(mesh.t_mat, stable=True)
    for t in (0.0, 0.3, 0.5, 1.0, 1.25, 2.0):
        want = skin_mesh(mesh, t)
        got = gltf.read(path, time=t)
        assert got.skin is None
        assert torch.allclose(_corners(got, "v_pos", "t_pos_idx", torch.arange(got.num_triangles)),
                              _corners(want, "v_pos", "t_pos_idx", order), atol=1e-4), t
        assert torch.allclose(_corners(got, "v_nrm", "t_nrm_idx", torch.arange(got.num_triangles)),
                              _corners(want, "v_nrm", "t_nrm_idx", order), atol=1e-4), t


def test_glb_positions_match_trimesh(tmp_path: Path) -> None:
    mesh = _grid_mesh()
    path = tmp_path / "m.glb"
    gltf.write(mesh, path)
    scene = trimesh.load(path, force="scene")
    ours = gltf.read(path)
    theirs = np.concatenate([g.vertices for g in scene.dump()])
    a = np.unique(np.round(ours.v_pos.numpy().astype(np.float64), 5), axis=0)
    b = np.unique(np.round(theirs, 5), axis=0)
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)
    assert np.allclose(np.unique(np.round(mesh.v_pos.numpy(), 5), axis=0), a, atol=1e-5)


@pytest.mark.parametrize("suffix", [".gltf", ".glb"])
def test_khronos_validator_accepts_our_files(
        tmp_path: Path, suffix: str, gltf_validator: Callable[[list[Path]], list[dict]]) -> None:
    path = tmp_path / f"v{suffix}"
    gltf.write(_skinned_mesh(), path)
    issues = gltf_validator([path])[0]["issues"]
    assert issues["numErrors"] == 0, issues["messages"]
    codes = {m["code"] for m in issues["messages"] if m["severity"] <= 1}
    assert codes <= {"MESH_PRIMITIVE_GENERATED_TANGENT_SPACE"}, issues["messages"]


# ---- hand-built files ----------------------------------------------------------------

def _rot_z(angle: float) -> list[float]:
    return [0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2)]


def test_node_hierarchy_is_flattened(tmp_path: Path) -> None:
    b = Builder()
    nrm = b.acc(np.tile([[0, 0, 1]], (3, 1)).astype(np.float32), 5126, "VEC3")
    tng = b.acc(np.tile([[1, 0, 0, 1]], (3, 1)).astype(np.float32), 5126, "VEC4")
    b.triangle_mesh(TRI, np.array([0, 1, 2]), NORMAL=nrm, TANGENT=tng)
    # root: translate (1,2,3) then rotate 90 deg about z; child: matrix scaling by 2
    child_m = np.diag([2.0, 2.0, 2.0, 1.0])
    child_m[:3, 3] = [0, 0, 1]
    b.doc.nodes = [gl.Node(translation=[1, 2, 3], rotation=_rot_z(math.pi / 2), children=[1]),
                   gl.Node(matrix=child_m.T.reshape(-1).tolist(), mesh=0),
                   gl.Node(scale=[-1, 1, 1], mesh=0)]  # mirrored copy
    b.doc.scenes = [gl.Scene(nodes=[0, 2])]
    b.doc.scene = 0
    mesh = gltf.read(b.save(tmp_path / "h.gltf"))
    r = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    want = (TRI * 2 + [0, 0, 1]) @ r.T + [1, 2, 3]
    assert np.allclose(mesh.v_pos[:3].numpy(), want, atol=1e-6)
    assert mesh.t_pos_idx[0].tolist() == [0, 1, 2]
    assert np.allclose(mesh.v_nrm[0].numpy(), [0, 0, 1], atol=1e-6)
    assert np.allclose(mesh.v_tng[0].numpy(), [0, 1, 0, 1], atol=1e-6)
    # the mirrored instance: x negated, winding flipped, tangent handedness flipped
    assert np.allclose(mesh.v_pos[3:].numpy(), TRI * [-1, 1, 1], atol=1e-6)
    assert mesh.t_pos_idx[1].tolist() == [3, 5, 4]
    assert np.allclose(mesh.v_tng[3].numpy(), [-1, 0, 0, -1], atol=1e-6)


def test_no_scene_reads_all_meshes_untransformed(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI)
    b.triangle_mesh(TRI + 5)
    mesh = gltf.read(b.save(tmp_path / "n.gltf"))
    assert mesh.num_triangles == 2 and float(mesh.v_pos.max()) == 6.0
    assert len(mesh.materials) == 1 and mesh.materials[0].ks[0, 0, 0] == 0.0


@pytest.mark.parametrize("comp", [5121, 5123, 5125])
def test_index_component_types(tmp_path: Path, comp: int) -> None:
    b = Builder()
    pos = np.concatenate([TRI, TRI + [0, 0, 1]])
    b.triangle_mesh(pos, np.array([[0, 1, 2], [5, 4, 3]]), comp)
    mesh = gltf.read(b.save(tmp_path / "i.gltf"))
    assert mesh.t_pos_idx.tolist() == [[0, 1, 2], [5, 4, 3]]


def test_strip_fan_and_points(tmp_path: Path) -> None:
    b = Builder()
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0]], np.float32)
    p = b.acc(pos, 5126, "VEC3")
    b.doc.meshes = [gl.Mesh(primitives=[
        gl.Primitive(attributes=gl.Attributes(POSITION=p), mode=5),
        gl.Primitive(attributes=gl.Attributes(POSITION=p), mode=6),
        gl.Primitive(attributes=gl.Attributes(POSITION=p), mode=0)])]
    with pytest.warns(UserWarning, match="points/lines"):
        mesh = gltf.read(b.save(tmp_path / "s.gltf"))
    # spec formulas; the fan's vertices 5..9 repeat the strip's positions 0..4 and are
    # welded to them (t_pos_idx), while the other attributes keep one entry per vertex
    assert mesh.t_pos_idx.tolist() == [[0, 1, 2], [1, 3, 2], [2, 3, 4],
                                       [1, 2, 0], [2, 3, 0], [3, 4, 0]]
    assert mesh.num_vertices == 5


def test_sparse_and_viewless_accessors(tmp_path: Path) -> None:
    b = Builder()
    pos = b.acc(TRI, 5126, "VEC3")
    idx_view = b.view(np.array([2], np.uint16).tobytes())
    val_view = b.view(np.array([[5, 6, 7]], np.float32).tobytes())
    sparse = gl.Sparse(count=1, indices=gl.AccessorSparseIndices(bufferView=idx_view,
                                                                 componentType=5123),
                       values=gl.AccessorSparseValues(bufferView=val_view))
    b.doc.accessors[pos].sparse = sparse
    # normals: no bufferView at all -> zeros, then the sparse values
    idx2 = b.view(np.array([0, 1, 2], np.uint8).tobytes())
    val2 = b.view(np.tile([[0, 0, 1]], (3, 1)).astype(np.float32).tobytes())
    nrm = b.acc(np.zeros((3, 3), np.float32), 5126, "VEC3", no_view=True, sparse=gl.Sparse(
        count=3, indices=gl.AccessorSparseIndices(bufferView=idx2, componentType=5121),
        values=gl.AccessorSparseValues(bufferView=val2)))
    b.doc.meshes = [gl.Mesh(primitives=[gl.Primitive(attributes=gl.Attributes(
        POSITION=pos, NORMAL=nrm))])]
    mesh = gltf.read(b.save(tmp_path / "sp.gltf"))
    assert mesh.v_pos.tolist() == [[0, 0, 0], [1, 0, 0], [5, 6, 7]]
    assert mesh.v_nrm.tolist() == [[0, 0, 1]] * 3


def test_normalized_uint8_uvs_strided_and_external_bin(tmp_path: Path) -> None:
    b = Builder()
    # interleave uv (2 bytes) with 2 bytes of padding: byteStride 4
    raw = np.array([[0, 255, 9, 9], [255, 0, 9, 9], [51, 102, 9, 9]], np.uint8)
    uv = b.acc(raw, 5121, "VEC2", view=b.view(raw.tobytes(), stride=4), count=3,
               normalized=True)
    b.triangle_mesh(TRI, TEXCOORD_0=uv)
    mesh = gltf.read(b.save(tmp_path / "uv.gltf", data_uri=False))
    assert np.allclose(mesh.v_tex.numpy(), [[0, 1], [1, 0], [0.2, 0.4]], atol=1e-6)


def _png_uri(rgba: np.ndarray) -> str:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgba).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def test_material_texture_transform_and_packing(tmp_path: Path) -> None:
    b = Builder()
    uv = b.acc(np.array([[0, 0], [1, 0], [0, 1]], np.float32), 5126, "VEC2")
    b.triangle_mesh(TRI, TEXCOORD_0=uv)
    b.doc.meshes[0].primitives[0].material = 0
    b.doc.images = [gl.Image(uri=_png_uri(np.full((2, 2, 4), [255, 128, 0, 128], np.uint8))),
                    gl.Image(uri=_png_uri(np.full((4, 4, 3), [51, 102, 204], np.uint8)))]
    b.doc.textures = [gl.Texture(source=0), gl.Texture(source=1)]
    transform = {"offset": [0.5, 0.25], "rotation": math.pi / 2, "scale": [2.0, 3.0]}
    b.doc.materials = [gl.Material(
        alphaMode="BLEND",
        pbrMetallicRoughness=gl.PbrMetallicRoughness(
            baseColorFactor=[1.0, 0.5, 1.0, 1.0], roughnessFactor=0.5, metallicFactor=1.0,
            baseColorTexture=gl.TextureInfo(index=0, extensions={
                "KHR_texture_transform": transform}),
            metallicRoughnessTexture=gl.TextureInfo(index=1, extensions={
                "KHR_texture_transform": transform})),
        occlusionTexture=gl.OcclusionTextureInfo(index=1, strength=0.5, extensions={
            "KHR_texture_transform": transform}),
        extensions={"KHR_materials_specular": {"specularFactor": 0.5, "specularTexture": {
            "index": 0, "extensions": {"KHR_texture_transform": transform}}}})]
    mesh = gltf.read(b.save(tmp_path / "t.gltf"))
    # uv' = T R S uv with R = [[c, s], [-s, c]] (c = 0, s = 1)
    assert np.allclose(mesh.v_tex.numpy(), [[0.5, 0.25], [0.5, -1.75], [3.5, 0.25]], atol=1e-6)
    m = mesh.materials[0]
    lin = ((128 / 255 + 0.055) / 1.055) ** 2.4
    assert m.kd.shape == (2, 2, 4)
    assert np.allclose(m.kd[0, 0].numpy(), [1.0, lin * 0.5, 0.0, 128 / 255], atol=1e-5)
    # ks = (1 - specularFactor * specularTexture.a, roughness G * factor, metallic B * factor)
    assert m.ks.shape == (4, 4, 3)
    assert np.allclose(m.ks[0, 0].numpy(), [1 - 0.5 * 128 / 255, 0.4 * 0.5, 0.8], atol=1e-5)
    # occlusion is its own map: 1 - strength * (1 - R), R = 51 / 255
    assert m.occlusion is not None and m.occlusion.shape == (4, 4, 1)
    assert np.allclose(m.occlusion[0, 0].numpy(), [1 - 0.5 * (1 - 0.2)], atol=1e-5)
    assert m.alpha_mode == "BLEND" and m.has_alpha


# ---- skins and animation from hand-built files ------------------------------------------

def _skinned_file(tmp_path: Path, interpolation: str, out: np.ndarray) -> Path:
    b = Builder()
    joints = b.acc(np.zeros((3, 4), np.uint8), 5121, "VEC4")
    weights = b.acc(np.tile([[2.0, 0, 0, 0]], (3, 1)).astype(np.float32), 5126, "VEC4")
    b.triangle_mesh(TRI, JOINTS_0=joints, WEIGHTS_0=weights)
    ibm = np.eye(4, dtype=np.float32)
    ibm[:3, 3] = [-1, 0, 0]  # joint at x = 1
    ibm_acc = b.acc(ibm.T.reshape(1, 16).copy(), 5126, "MAT4")
    times = b.acc(np.array([0.0, 1.0], np.float32), 5126, "SCALAR")
    values = b.acc(out.astype(np.float32), 5126, "VEC3")
    b.doc.nodes = [gl.Node(mesh=0, skin=0, translation=[100, 0, 0]),  # ignored: skinned
                   gl.Node(translation=[0, 0, 1], children=[2]), gl.Node(translation=[1, 0, 0])]
    b.doc.skins = [gl.Skin(joints=[2], inverseBindMatrices=ibm_acc)]
    b.doc.animations = [gl.Animation(
        samplers=[gl.AnimationSampler(input=times, output=values, interpolation=interpolation)],
        channels=[gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(
            node=2, path="translation"))])]
    b.doc.scenes = [gl.Scene(nodes=[0, 1])]
    return b.save(tmp_path / "skin.gltf")


@pytest.mark.parametrize("interp,t,want_x", [("LINEAR", 0.25, 1.5), ("STEP", 0.75, 1.0),
                                               ("CUBICSPLINE", 0.5, 2.0 + 0.125 * 4)])
def test_skin_bakes_joint_world_times_inverse_bind(tmp_path: Path, interp: str, t: float,
                                                   want_x: float) -> None:
    if interp == "CUBICSPLINE":  # (in-tangent, value, out-tangent) per key
        out = np.array([[0, 0, 0], [1, 0, 0], [4, 0, 0], [0, 0, 0], [3, 0, 0], [0, 0, 0]])
        # hermite at s=0.5: 0.5*1 + 0.125*4 + 0.5*3 - 0.125*0 = 2.0 + 0.5
    else:
        out = np.array([[1, 0, 0], [3, 0, 0]])
    mesh = gltf.read(_skinned_file(tmp_path, interp, out))
    assert mesh.v_pos.tolist() == TRI.tolist()  # bind pose, node transform ignored
    assert torch.allclose(mesh.v_weights, torch.tensor([[1.0, 0, 0, 0]]).expand(3, 4))
    # STEP gets a key just before the jump, CUBICSPLINE 7 more per interval
    n_keys = {"LINEAR": 2, "STEP": 3, "CUBICSPLINE": 9}[interp]
    assert mesh.skin.times.shape == (n_keys,) and mesh.skin.times[[0, -1]].tolist() == [0, 1]
    posed = gltf.read(_skinned_file(tmp_path, interp, out), time=t)
    # joint world = T(0,0,1) T(x,0,0); skin matrix = that @ T(-1,0,0)
    assert np.allclose(posed.v_pos.numpy(), TRI + [want_x - 1, 0, 1], atol=1e-5)


# ---- errors ------------------------------------------------------------------------------

def _expect(path: Path, substring: str, **kw: object) -> None:
    with pytest.raises(InputFileError) as info:
        gltf.read(path, **kw)
    assert str(path) in str(info.value) and substring in str(info.value), str(info.value)


def test_truncated_glb(tmp_path: Path) -> None:
    path = tmp_path / "t.glb"
    gltf.write(_grid_mesh(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect(path, f"truncated GLB: header says {len(data)} bytes, file has {len(data) // 2}")
    path.write_bytes(data[:7])
    _expect(path, "truncated GLB: 7 bytes")
    # consistent header length but a chunk that claims more than there is
    bad = bytearray(data[:40])
    struct.pack_into("<I", bad, 8, 40)
    path.write_bytes(bytes(bad))
    _expect(path, "truncated GLB: chunk 0 needs")


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "b.gltf"
    path.write_text('{"asset": {"version": "2.0"}, "meshes": [')
    _expect(path, "bad glTF JSON")


def test_accessor_out_of_bounds(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI)
    b.doc.accessors[0].count = 4
    _expect(b.save(tmp_path / "o.gltf"),
            "accessor 0 (POSITION of mesh 0 primitive 0): needs bytes 0..48 but bufferView 0 "
            "has 36; out of bounds")


def test_index_out_of_range_and_nan(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI, np.array([0, 1, 3]))
    _expect(b.save(tmp_path / "i.gltf"),
            "accessor 1 (indices of mesh 0 primitive 0): index 3 out of range for 3 vertices")
    b = Builder()
    b.triangle_mesh(np.array([[0, 0, 0], [1, np.nan, 0], [0, 1, 0]]))
    _expect(b.save(tmp_path / "n.gltf"),
            "accessor 0 (POSITION of mesh 0 primitive 0): holds NaN or Inf")


def test_missing_and_escaping_files(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI)
    path = b.save(tmp_path / "m.gltf", data_uri=False)
    (tmp_path / "m.bin").unlink()
    _expect(path, "buffer 0: file 'm.bin' not found")
    for uri in ("../secret.bin", "/etc/passwd", "sub/../../x.bin"):
        doc = json.loads(path.read_text())
        doc["buffers"][0]["uri"] = uri
        path.write_text(json.dumps(doc))
        _expect(path, "refused")
    doc["buffers"][0]["uri"] = "../secret.bin"
    path.write_text(json.dumps(doc))
    _expect(path, "buffer 0: URI '../secret.bin' leads outside the model's folder")


def test_data_uri_longer_than_byte_length(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI)
    path = b.save(tmp_path / "d.gltf")
    doc = json.loads(path.read_text())
    doc["buffers"][0]["byteLength"] = 10
    path.write_text(json.dumps(doc))
    _expect(path, "buffer 0: data URI holds 36 bytes, more than the declared byteLength 10")


def test_missing_image(tmp_path: Path) -> None:
    mesh = _grid_mesh()
    path = tmp_path / "x.gltf"
    gltf.write(mesh, path)
    (tmp_path / "x_0_basecolor.png").unlink()
    _expect(path, "image 0: file 'x_0_basecolor.png' not found")


def test_write_refuses_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must end in .gltf or .glb"):
        gltf.write(_grid_mesh(), tmp_path / "x.obj")
    assert list(tmp_path.iterdir()) == []


def test_oversized_buffer_refused(tmp_path: Path) -> None:
    from difflod.io.limits import ReadLimits

    b = Builder()
    b.triangle_mesh(TRI)
    path = b.save(tmp_path / "big.gltf")
    doc = json.loads(path.read_text())
    doc["buffers"][0]["byteLength"] = 10 ** 12
    path.write_text(json.dumps(doc))
    _expect(path, "buffer 0: byteLength declares 1000000000000 bytes, more than the limit of "
                  "4294967296 (raise it with max_file_bytes / --max-file-bytes)")
    # with the limit raised, the read goes on to the next problem
    _expect(path, "buffer 0: byteLength is 1000000000000 but only 36 bytes are available",
            limits=ReadLimits(max_file_bytes=10 ** 13))


def test_missing_accessor_reference(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI)
    b.doc.meshes[0].primitives[0].attributes.NORMAL = 9
    _expect(b.save(tmp_path / "r.gltf"),
            "NORMAL of mesh 0 primitive 0 refers to accessor 9, but the file has 1 accessors")


def test_static_mesh_beside_skin_becomes_rigid_joint(tmp_path: Path) -> None:
    path = _skinned_file(tmp_path, "LINEAR", np.array([[1, 0, 0], [3, 0, 0]]))
    doc = json.loads(path.read_text())
    pos = doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
    doc["meshes"].append({"primitives": [{"attributes": {"POSITION": pos}}]})
    doc["nodes"][2]["children"] = [3]  # a static mesh carried by the animated joint
    doc["nodes"].append({"mesh": 1, "translation": [0, 5, 0]})
    doc["animations"][0]["name"] = "walk"
    path.write_text(json.dumps(doc))
    mesh = gltf.read(path, animation="walk")
    assert mesh.skin.num_joints == 2 and mesh.skin.joint_names[1].startswith("rigid:")
    # rest: joint at (1,0,1) from its own rest TRS; static copy baked at rest world
    assert np.allclose(mesh.v_pos[3:].numpy(), TRI + [1, 5, 1], atol=1e-6)
    posed = gltf.read(path, time=1.0)  # the joint moved +2 in x: both parts follow
    assert np.allclose(posed.v_pos[:3].numpy(), TRI + [2, 0, 1], atol=1e-5)
    assert np.allclose(posed.v_pos[3:].numpy(), TRI + [3, 5, 1], atol=1e-5)
    _expect(path, "no animation named 'run'", animation="run")


def test_unsupported_required_extension_refused(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI)
    b.doc.extensionsRequired = ["KHR_draco_mesh_compression"]
    _expect(b.save(tmp_path / "draco.gltf"),
            "extensionsRequired lists ['KHR_draco_mesh_compression']")


# ---- fast paths of the writer and reader ------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_unique_corners_matches_numpy_unique(seed: int) -> None:
    from difflod.io.gltf_write import unique_corners

    rng = np.random.default_rng(seed)
    for _ in range(40):
        n, k, hi = int(rng.integers(1, 80)), int(rng.integers(1, 5)), int(rng.integers(1, 9))
        corners = rng.integers(0, hi, (n, k)).astype(np.int64)
        if k > 1 and rng.random() < 0.5:
            corners[:, 1] = corners[:, 0]  # the shared-index-buffer fast path
        if k > 2 and rng.random() < 0.5:
            corners[:, 2] = corners[:, 0] * 3 + 1000  # wide value range
        got, inverse = unique_corners(corners)
        want, want_inverse = np.unique(corners, axis=0, return_inverse=True)
        assert np.array_equal(got, want)
        assert np.array_equal(inverse, want_inverse.reshape(-1))
    empty, inv = unique_corners(np.zeros((0, 2), np.int64))
    assert empty.shape == (0, 2) and inv.shape == (0,)
    with pytest.raises(ValueError, match="corners must be"):
        unique_corners(np.zeros((3, 2), np.int32))


def _seam_variant(mesh: Mesh) -> Mesh:
    """`mesh` whose first corner of each triangle gets its own UV: UV seams everywhere."""
    tex_idx = mesh.t_tex_idx.clone()
    extra = mesh.v_tex[tex_idx[:, 0]] + 0.01
    tex_idx[:, 0] = len(mesh.v_tex) + torch.arange(mesh.num_triangles)
    return mesh.replace(v_tex=torch.cat([mesh.v_tex, extra]), t_tex_idx=tex_idx)


@pytest.mark.parametrize("seams", [False, True])
def test_round_trip_shared_vs_separate_index_buffers(tmp_path: Path, seams: bool) -> None:
    base = _grid_mesh(4).replace(t_mat=None, materials=(Material(
        kd=torch.rand(2, 2, 3, generator=torch.Generator().manual_seed(0)),
        normal=torch.tensor([[[0.0, 0.0, 1.0]]])),))
    mesh = _seam_variant(base) if seams else base
    path = tmp_path / "m.glb"
    gltf.write(mesh, path)
    back = gltf.read(path)
    every = torch.arange(mesh.num_triangles)
    for attr, idx in (("v_pos", "t_pos_idx"), ("v_tex", "t_tex_idx"), ("v_nrm", "t_nrm_idx"),
                      ("v_tng", "t_tng_idx")):
        assert torch.allclose(_corners(back, attr, idx, every), _corners(mesh, attr, idx, every),
                              atol=1e-6), attr
    # one glTF vertex per distinct (position, uv) index pair, and the reader welds the
    # split positions again, so the connectivity is the written mesh's
    pairs = set(zip(mesh.t_pos_idx.reshape(-1).tolist(), mesh.t_tex_idx.reshape(-1).tolist()))
    assert len(back.v_tex) == len(pairs)
    assert (len(back.v_tex) > mesh.num_vertices) == seams
    assert back.num_vertices == mesh.num_vertices
    assert torch.equal(back.t_pos_idx, mesh.t_pos_idx)
    # the other attributes share one index buffer (one entry per glTF vertex); without
    # seams nothing was split, so it is the position index too
    assert back.t_nrm_idx is back.t_tex_idx
    assert (back.t_tex_idx is back.t_pos_idx) == (not seams)


def test_transform_overflow_is_refused(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI * 1e30, np.array([0, 1, 2]))
    b.doc.nodes = [gl.Node(scale=[1e30, 1, 1], mesh=0)]
    b.doc.scenes = [gl.Scene(nodes=[0])]
    with pytest.raises(InputFileError, match="POSITION holds NaN or Inf after applying"):
        gltf.read(b.save(tmp_path / "big.gltf"))


def test_non_finite_material_factor_is_refused(tmp_path: Path) -> None:
    b = Builder()
    b.triangle_mesh(TRI, np.array([0, 1, 2]))
    b.doc.materials = [gl.Material(pbrMetallicRoughness=gl.PbrMetallicRoughness(
        roughnessFactor=1e39))]
    b.doc.meshes[0].primitives[0].material = 0
    text = b.save(tmp_path / "f.gltf").read_text().replace("1e+39", "1e999")
    (tmp_path / "f.gltf").write_text(text)
    with pytest.raises(InputFileError, match=r"materials\[0\]\.pbrMetallicRoughness\."
                                             r"roughnessFactor must be a finite number, got inf"):
        gltf.read(tmp_path / "f.gltf")


def test_unsupported_features_are_named_in_one_warning_each(tmp_path: Path) -> None:
    b = Builder()
    colors = b.acc(np.ones((3, 4), np.float32), 5126, "VEC4")
    b.triangle_mesh(TRI, COLOR_0=colors)
    b.doc.meshes[0].primitives[0].material = 0
    b.doc.materials = [gl.Material(name="lamp", emissiveFactor=[1.0, 0.5, 0.0],
                                   extensions={"KHR_materials_clearcoat": {}})]
    with pytest.warns(UserWarning) as record:
        mesh = gltf.read(b.save(tmp_path / "e.gltf"))
    messages = [str(w.message) for w in record]
    assert sum("KHR_materials_clearcoat" in m and "lamp" in m for m in messages) == 1, messages
    assert not any("emissive" in m for m in messages), messages  # read, not dropped
    assert mesh.materials[0].emissive is not None
    assert not any("COLOR_0" in m for m in messages), messages  # read, not dropped
    assert mesh.v_color is not None
    assert mesh.num_triangles == 1
