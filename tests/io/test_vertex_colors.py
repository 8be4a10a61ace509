"""Vertex colors in files: glTF COLOR_0 and OBJ `v x y z r g b`, read and written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from difflod.errors import InputFileError
from difflod.io import gltf, obj
from difflod.mesh import Mesh
from tests.io.test_gltf import TRI, Builder

RGB = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.25, 0.75, 1.0]], np.float32)


def _colored(tmp_path: Path, arr: np.ndarray, comp: int, type_: str,
             normalized: bool | None = None) -> Path:
    b = Builder()
    kw = {} if normalized is None else {"normalized": normalized}
    b.triangle_mesh(TRI, COLOR_0=b.acc(arr, comp, type_, **kw))
    return b.save(tmp_path / "c.gltf")


def test_gltf_float_vec3_is_linear_with_alpha_one(tmp_path: Path) -> None:
    mesh = gltf.read(_colored(tmp_path, RGB, 5126, "VEC3"))
    assert mesh.v_color is not None and mesh.v_color.dtype == torch.float32
    # glTF colors are linear: no transfer curve applied; positions keep their colors
    color_of = {tuple(p): c for p, c in zip(mesh.v_pos.tolist(), mesh.v_color.tolist())}
    for p, c in zip(TRI.tolist(), RGB.tolist()):
        assert color_of[tuple(p)] == [*c, 1.0]


@pytest.mark.parametrize(("comp", "dtype"), [(5121, np.uint8), (5123, np.uint16)])
def test_gltf_normalized_integers_vec4(tmp_path: Path, comp: int, dtype: type) -> None:
    top = np.iinfo(dtype).max
    raw = np.array([[top, 0, 0, top], [0, top // 2, 0, top], [0, 0, top, 0]], dtype)
    mesh = gltf.read(_colored(tmp_path, raw, comp, "VEC4", normalized=True))
    assert mesh.v_color is not None
    # x / max is exact to float32 rounding
    assert np.allclose(mesh.v_color.numpy(), raw.astype(np.float64) / top, atol=1e-6)


def test_gltf_float_colors_clamped_to_unit_range(tmp_path: Path) -> None:
    raw = np.array([[2.0, -1.0, 0.5, 1.5]] * 3, np.float32)
    mesh = gltf.read(_colored(tmp_path, raw, 5126, "VEC4"))
    assert mesh.v_color.tolist() == [[1.0, 0.0, 0.5, 1.0]] * 3


@pytest.mark.parametrize(("arr", "comp", "type_", "normalized", "needle"), [
    (np.zeros((3, 3), np.uint8), 5121, "VEC3", False, r"COLOR_0 .*normalized unsigned"),
    (np.zeros((3, 3), np.int16), 5122, "VEC3", True, r"COLOR_0 .*componentType 5122"),
    (np.zeros((3, 2), np.float32), 5126, "VEC2", None, r"COLOR_0 .*width \(3, 4\)"),
])
def test_gltf_bad_color_accessor_is_one_line_error(tmp_path: Path, arr: np.ndarray, comp: int,
                                                   type_: str, normalized: bool | None,
                                                   needle: str) -> None:
    path = _colored(tmp_path, arr, comp, type_, normalized)
    with pytest.raises(InputFileError, match=needle) as info:
        gltf.read(path)
    assert "\n" not in str(info.value) and "c.gltf" in str(info.value)


def test_gltf_vertices_with_different_colors_are_not_welded(tmp_path: Path) -> None:
    # two triangles sharing an edge by position, but colored differently
    b = Builder()
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)
    col = np.array([[1, 0, 0]] * 3 + [[1, 0, 0], [0, 0, 1], [0, 0, 1]], np.float32)
    b.triangle_mesh(pos, COLOR_0=b.acc(col, 5126, "VEC3"))
    mesh = gltf.read(b.save(tmp_path / "w.gltf"))
    # (1,0,0) agrees in color and is welded; (0,1,0) differs and stays split
    assert mesh.num_vertices == 5
    corners = mesh.v_color[mesh.t_pos_idx][..., :3].reshape(-1, 3)
    assert corners.tolist() == col.tolist()


def test_obj_rgb_is_srgb_to_linear(tmp_path: Path) -> None:
    text = ("v 0 0 0 1 0 0\nv 1 0 0 0 0.5 0\nv 0 1 0 0.25 0.75 1\nv 1 1 0\nv 2 2 0 1\n"
            "f 1 2 3\nf 2 4 5\n")
    (tmp_path / "c.obj").write_text(text)
    mesh = obj.read(tmp_path / "c.obj")
    assert mesh.v_pos.tolist()[:3] == TRI.tolist()
    assert mesh.v_color is not None and mesh.v_color.shape == (5, 4)
    # sRGB 0.5 -> 0.2140 linear (the IEC 61966-2-1 curve, computed independently)
    def curve(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    want = [[curve(c) for c in row] + [1.0] for row in RGB.tolist()] + [[1.0] * 4] * 2
    assert np.allclose(mesh.v_color.numpy(), want, atol=1e-6)
    assert abs(mesh.v_color[1, 1].item() - 0.21404) < 1e-4


def test_obj_without_colors_has_none(tmp_path: Path) -> None:
    (tmp_path / "p.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0 1\nf 1 2 3\n")
    assert obj.read(tmp_path / "p.obj").v_color is None


def test_mesh_validate_names_v_color() -> None:
    mesh = Mesh(v_pos=torch.tensor(TRI), t_pos_idx=torch.tensor([[0, 1, 2]]),
                v_color=torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"v_color must be \[3,4\] float32, got \(3, 3\)"):
        mesh.validate()
    bad = mesh.replace(v_color=torch.full((3, 4), float("nan")))
    with pytest.raises(ValueError, match="v_color holds NaN"):
        bad.validate()
    assert mesh.replace(v_color=torch.ones(3, 4)).to("cpu").clone().v_color.shape == (3, 4)


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_gltf_write_keeps_vertex_colors(tmp_path: Path, suffix: str) -> None:
    from difflod.assets import make

    mesh = make("vcolor", triangles=300, seed=1)
    # a varied alpha too, and a seam where UVs split the glTF vertices
    rgba = mesh.v_color.clone()
    rgba[:, 3] = torch.linspace(0.2, 1.0, mesh.num_vertices)
    mesh = mesh.replace(v_color=rgba)
    gltf.write(mesh, tmp_path / f"c{suffix}")
    back = gltf.read(tmp_path / f"c{suffix}")
    assert back.v_color is not None
    # compare per triangle corner (vertex order may change); float32 is stored as is
    torch.testing.assert_close(back.v_color[back.t_pos_idx], mesh.v_color[mesh.t_pos_idx],
                               atol=0.0, rtol=0.0)
    # and a mesh without colors writes none
    gltf.write(mesh.replace(v_color=None), tmp_path / f"n{suffix}")
    assert gltf.read(tmp_path / f"n{suffix}").v_color is None


def test_obj_write_keeps_vertex_colors(tmp_path: Path) -> None:
    from difflod.assets import make

    mesh = make("vcolor", triangles=300, seed=2)
    obj.write(mesh, tmp_path / "c.obj")
    assert len((tmp_path / "c.obj").read_text().splitlines()[2].split()) == 7  # v x y z r g b
    back = obj.read(tmp_path / "c.obj")
    # %.9g text and the sRGB curve both ways: float32 rounding, ~1e-6
    torch.testing.assert_close(back.v_color[back.t_pos_idx], mesh.v_color[mesh.t_pos_idx],
                               atol=2e-6, rtol=0.0)


def test_khronos_validator_accepts_color_0(
        tmp_path: Path, gltf_validator: Callable[[list[Path]], list[dict]]) -> None:
    from difflod.assets import make

    path = tmp_path / "c.glb"
    gltf.write(make("vcolor", triangles=300, seed=1), path)
    issues = gltf_validator([path])[0]["issues"]
    assert issues["numErrors"] == 0, issues["messages"]
    assert not [m for m in issues["messages"] if m["severity"] <= 1], issues["messages"]
