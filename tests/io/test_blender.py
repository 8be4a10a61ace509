"""Blender (3.4, Debian's package, headless) imports difflod's GLB as it was meant.

Blender's own glTF importer must find the normals difflod wrote (custom split
normals, so the model is smooth where difflod shaded it smooth), the UVs,
every material, and each channel wired to the Principled BSDF input of its
meaning: base color (sRGB), roughness and metallic (non-colour data), the
normal map through a Normal Map node (non-colour), and the trained specular
strength (KHR_materials_specular, from the specular texture's alpha).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import difflod
from difflod.assets import make

SCRIPT = Path(__file__).with_name("blender_import.py")


@pytest.fixture(scope="module")
def blender() -> str:
    path = shutil.which("blender")
    if path is None:
        reason = "Blender not installed (Debian: apt-get install blender python3-numpy)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _import(blender: str, model: Path) -> dict:
    out = subprocess.run([blender, "-b", "--factory-startup", "-noaudio", "--python",
                          str(SCRIPT), "--", str(model)],
                         check=False, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    assert out.returncode == 0 and lines, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT"):])


def _wired(links: list[list[str]], to_socket: str) -> list[str]:
    return [f"{a}.{b}" for a, b, node, socket in links
            if node == "BSDF_PRINCIPLED" and socket == to_socket]


@pytest.mark.slow
def test_blender_imports_every_channel(blender: str, tmp_path: Path) -> None:
    spiky, mushroom = make("spiky", 2000, 0, 64), make("multi_material", 2000, 0, 64)
    assert spiky.materials[0].ks[..., 0].max() > 0.1  # a specular strength to carry
    difflod.save(spiky, tmp_path / "spiky.glb")
    difflod.save(mushroom, tmp_path / "mushroom.glb")

    got = _import(blender, tmp_path / "spiky.glb")
    (mesh,) = got["meshes"].values()
    assert mesh["polys"] == spiky.num_triangles
    assert mesh["custom_normals"] and mesh["uv_layers"] == 1
    links = got["materials"]["spiky"]["links"]
    assert _wired(links, "Base Color") == ["TEX_IMAGE.Color"]
    assert _wired(links, "Roughness") == ["SEPARATE_COLOR.Green"]
    assert _wired(links, "Metallic") == ["SEPARATE_COLOR.Blue"]
    assert _wired(links, "Normal") == ["NORMAL_MAP.Normal"]
    assert ["TEX_IMAGE", "Color", "NORMAL_MAP", "Color"] in links
    assert any(a == "TEX_IMAGE" and b == "Alpha" and s == "Specular" for a, b, _, s in links)
    spaces = got["materials"]["spiky"]["colorspaces"]
    assert spaces["0_basecolor"] == "sRGB"
    assert spaces["0_mr"] == spaces["0_normal"] == spaces["0_specular"] == "Non-Color"

    got = _import(blender, tmp_path / "mushroom.glb")
    (mesh,) = got["meshes"].values()
    assert mesh["polys"] == mushroom.num_triangles and mesh["custom_normals"]
    assert mesh["materials"] == [m.name for m in mushroom.materials]
    for k, m in enumerate(mushroom.materials):
        links = got["materials"][m.name]["links"]
        assert bool(_wired(links, "Normal")) == (m.normal is not None), m.name
        textured = m.kd.shape[0] * m.kd.shape[1] > 1
        assert _wired(links, "Base Color") == (["TEX_IMAGE.Color"] if textured else []), m.name
        if textured:
            assert got["materials"][m.name]["colorspaces"][f"{k}_basecolor"] == "sRGB"


@pytest.mark.slow
def test_blender_draws_a_card_cloud_as_a_two_sided_cut_out(blender: str, tmp_path: Path) -> None:
    """The foliage base (crossed cards, MASK at 0.5, double-sided) as Blender
    imports it: alpha clipped at the cutoff from the base colour texture's alpha,
    no backface culling."""
    from difflod.base.baseline import baseline

    cards = baseline(make("shrub", 2000, 0, 64), 40, texture_res=64, method="cards")
    difflod.save(cards, tmp_path / "cards.glb")
    got = _import(blender, tmp_path / "cards.glb")
    (mesh,) = got["meshes"].values()
    assert mesh["polys"] == cards.num_triangles
    mat = got["materials"]["baseline"]
    assert (mat["blend"], mat["alpha_threshold"], mat["backface_culling"]) == ("CLIP", 0.5, False)
    assert _wired(mat["links"], "Alpha") == ["TEX_IMAGE.Alpha"]
