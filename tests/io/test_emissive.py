"""Emissive through the readers and writers: glTF (emissiveTexture x emissiveFactor x
KHR_materials_emissive_strength) and MTL (Ke, map_Ke with -mm), round trips
within 8-bit sRGB, hand-written files read to values computed here, and the
Khronos validator on what difflod writes."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
import torch
from PIL import Image

import difflod
from difflod.assets import make
from difflod.errors import InputFileError
from difflod.io import gltf
from difflod.io.mtl import read_mtl
from difflod.mesh import Mesh

# d(linear)/d(sRGB) is largest at sRGB 1: 2.4 / 1.055 * ((1 + 0.055) / 1.055) ** 1.4
_SRGB_SLOPE = 2.4 / 1.055


def _srgb_to_linear(s: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1, written out here (not difflod's)."""
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4)


def _with_emissive(mesh: Mesh, emissive: torch.Tensor) -> Mesh:
    return mesh.replace(materials=(dataclasses.replace(mesh.materials[0], emissive=emissive),))


def _cases() -> dict[str, Mesh]:
    beacon = make("beacon", 600, 0, 32)
    glow = beacon.materials[0].emissive
    assert glow is not None and float(glow.max()) > 1.0
    sphere = make("sphere", 300, 0, 16)
    return {
        "texture_above_1": beacon,                       # needs emissiveStrength / -mm
        "texture_below_1": _with_emissive(beacon, glow / float(glow.max()) * 0.8),
        "constant_below_1": _with_emissive(sphere, torch.tensor([[[0.2, 0.5, 0.9]]])),
        "constant_above_1": _with_emissive(sphere, torch.tensor([[[6.0, 2.5, 0.0]]])),
    }


@pytest.mark.parametrize("suffix", [".glb", ".gltf", ".obj"])
@pytest.mark.parametrize("case", ["texture_above_1", "texture_below_1", "constant_below_1",
                                  "constant_above_1"])
def test_emissive_round_trips(tmp_path: Path, suffix: str, case: str) -> None:
    mesh = _cases()[case]
    want = mesh.materials[0].emissive
    assert want is not None
    path = tmp_path / f"m{suffix}"
    difflod.save(mesh, path)
    got = difflod.load(path).materials[0].emissive
    assert got is not None and got.shape == want.shape
    peak = float(want.max())
    if want.shape[:2] == (1, 1):
        # glTF: float32 factor x strength; OBJ: Ke printed with 6 decimals
        tol = 1e-6 * max(peak, 1.0) if suffix != ".obj" else 5e-7 + 1e-6
    else:
        # 8-bit sRGB of value / max(peak, 1): half a step times the curve's
        # largest slope, scaled back by the peak
        tol = max(peak, 1.0) * 0.5 / 255 * _SRGB_SLOPE + 1e-5
    err = float((got - want).abs().max())
    assert err <= tol, (case, suffix, err, tol)


def test_all_zero_emissive_is_no_emissive(tmp_path: Path) -> None:
    mesh = _with_emissive(make("sphere", 300, 0, 16), torch.zeros(4, 4, 3))
    for suffix in (".glb", ".obj"):
        difflod.save(mesh, tmp_path / f"z{suffix}")
        assert difflod.load(tmp_path / f"z{suffix}").materials[0].emissive is None


def _png_uri(rgb: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _hand_gltf(path: Path, material: gl.Material, image: np.ndarray | None) -> Path:
    """One textured triangle with `material` (its emissiveTexture, if any, is texture 0)."""
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    blob = pos.tobytes() + uv.tobytes()
    doc = gl.GLTF2(asset=gl.Asset(version="2.0"))
    doc.buffers = [gl.Buffer(byteLength=len(blob), uri="data:application/octet-stream;base64,"
                             + base64.b64encode(blob).decode())]
    doc.bufferViews = [gl.BufferView(buffer=0, byteOffset=0, byteLength=36),
                       gl.BufferView(buffer=0, byteOffset=36, byteLength=24)]
    doc.accessors = [gl.Accessor(bufferView=0, componentType=5126, count=3, type="VEC3",
                                 min=[0, 0, 0], max=[1, 1, 0]),
                     gl.Accessor(bufferView=1, componentType=5126, count=3, type="VEC2")]
    doc.meshes = [gl.Mesh(primitives=[gl.Primitive(
        attributes=gl.Attributes(POSITION=0, TEXCOORD_0=1), material=0)])]
    doc.nodes = [gl.Node(mesh=0)]
    doc.scenes = [gl.Scene(nodes=[0])]
    doc.materials = [material]
    if image is not None:
        doc.images = [gl.Image(uri=_png_uri(image))]
        doc.textures = [gl.Texture(source=0)]
    path.write_text(doc.to_json())
    return path


def test_gltf_emissive_is_texture_times_factor_times_strength(tmp_path: Path) -> None:
    rgb = np.array([[[255, 128, 0], [10, 200, 60]], [[0, 0, 0], [255, 255, 255]]], np.uint8)
    mat = gl.Material(emissiveTexture=gl.TextureInfo(index=0), emissiveFactor=[1.0, 0.5, 0.25],
                      extensions={"KHR_materials_emissive_strength": {"emissiveStrength": 4.0}})
    got = gltf.read(_hand_gltf(tmp_path / "t.gltf", mat, rgb)).materials[0].emissive
    want = _srgb_to_linear(rgb / 255.0) * np.array([1.0, 0.5, 0.25]) * 4.0
    assert got is not None
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)

    # no texture: the factor (x strength) alone; factor 0 (glTF's default): none
    const = gl.Material(emissiveFactor=[0.5, 0.25, 1.0],
                        extensions={"KHR_materials_emissive_strength": {"emissiveStrength": 2.0}})
    got = gltf.read(_hand_gltf(tmp_path / "c.gltf", const, None)).materials[0].emissive
    assert got is not None
    np.testing.assert_allclose(got.numpy().reshape(3), [1.0, 0.5, 2.0], rtol=1e-6)
    plain = gl.Material(emissiveTexture=gl.TextureInfo(index=0))
    assert gltf.read(_hand_gltf(tmp_path / "p.gltf", plain, rgb)).materials[0].emissive is None


@pytest.mark.parametrize(("member", "value", "message"), [
    ("emissiveFactor", [1.0, -0.5, 0.0], r"emissiveFactor must be 3 finite numbers >= 0"),
    ("emissiveFactor", [1.0, 0.5], r"emissiveFactor must be 3 finite numbers >= 0"),
    ("strength", -1.0, r"emissiveStrength must be a finite number >= 0, got -1.0"),
    ("strength", "bright", r"emissiveStrength"),
])
def test_bad_emissive_values_are_one_clear_error(tmp_path: Path, member: str, value: object,
                                                 message: str) -> None:
    mat = gl.Material(emissiveFactor=[1.0, 1.0, 1.0])
    path = _hand_gltf(tmp_path / "bad.gltf", mat, None)
    doc = json.loads(path.read_text())
    if member == "strength":
        doc["materials"][0]["extensions"] = {
            "KHR_materials_emissive_strength": {"emissiveStrength": value}}
    else:
        doc["materials"][0][member] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match=message):
        gltf.read(path)


def test_gltf_writer_puts_values_above_1_into_emissive_strength(tmp_path: Path) -> None:
    mesh = _cases()["constant_above_1"]
    difflod.save(mesh, tmp_path / "s.gltf")
    mat = json.loads((tmp_path / "s.gltf").read_text())["materials"][0]
    # the schema holds emissiveFactor to [0,1]; the peak goes to the extension
    assert mat["emissiveFactor"] == pytest.approx([1.0, 2.5 / 6.0, 0.0])
    assert mat["extensions"]["KHR_materials_emissive_strength"] == {"emissiveStrength": 6.0}


def _mtl(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "m.mtl"
    path.write_text(text)
    return read_mtl(path, tmp_path)


def test_mtl_ke_and_map_ke(tmp_path: Path) -> None:
    rgb = np.array([[[255, 128, 0], [10, 200, 60]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "glow.png")
    mats = _mtl(tmp_path, "newmtl a\nKe 0.5 2.0 0\n"
                          "newmtl b\nKe 9 9 9\nmap_Ke -mm 0.1 4 glow.png\n"
                          "newmtl c\nKe 0 0 0\n"
                          "newmtl d\nKd 1 1 1\n")
    np.testing.assert_allclose(mats["a"].emissive.numpy().reshape(3), [0.5, 2.0, 0.0])
    # the map replaces Ke; -mm base gain: base + gain x linear(texel)
    want = 0.1 + 4.0 * _srgb_to_linear(rgb / 255.0)
    np.testing.assert_allclose(mats["b"].emissive.numpy(), want, rtol=1e-5, atol=1e-6)
    assert mats["c"].emissive is None and mats["d"].emissive is None


def test_mtl_negative_emission_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"m\.mtl: line 1: emissive \(Ke / map_Ke\) is "
                                             r"negative in material 'a'"):
        _mtl(tmp_path, "newmtl a\nKe 0.5 -2.0 0\n")


def test_obj_writer_scales_maps_above_1_with_mm(tmp_path: Path) -> None:
    mesh = _cases()["texture_above_1"]
    difflod.save(mesh, tmp_path / "o.obj")
    text = (tmp_path / "o.mtl").read_text()
    peak = float(mesh.materials[0].emissive.max())
    line = next(x for x in text.splitlines() if x.startswith("map_Ke"))
    assert line.split()[:3] == ["map_Ke", "-mm", "0"]
    assert float(line.split()[3]) == pytest.approx(peak, rel=1e-6)
    assert (tmp_path / "texture_ke.png").is_file()


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_khronos_validator_accepts_emissive_files(
        tmp_path: Path, suffix: str, gltf_validator: Callable[[list[Path]], list[dict]]) -> None:
    paths = []
    for name, mesh in _cases().items():
        paths.append(tmp_path / f"{name}{suffix}")
        difflod.save(mesh, paths[-1])
    for path, report in zip(paths, gltf_validator(paths)):
        # severities: 0 error, 1 warning, 2 info, 3 hint
        found = [(m["code"], m.get("pointer")) for m in report["issues"]["messages"]
                 if m["severity"] <= 2]
        assert found == [], (path.name, found)
        used = report["info"].get("extensionsUsed", [])
        assert ("KHR_materials_emissive_strength" in used) == ("above_1" in path.name), used
