"""An LOD chain in one glTF (MSFT_lod): written by io.gltf_write.write_lods, read
level by level by io.gltf.read(lod=...), and accepted by the Khronos validator."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from difflod.assets import make
from difflod.base.baseline import baseline
from difflod.errors import InputFileError
from difflod.io import load
from difflod.io.gltf_write import write_lods


@pytest.fixture(scope="module")
def chain():
    ref = make("spiky", 3000, 0, 64)
    return [baseline(ref, n, texture_res=32) for n in (800, 200, 50)]


def _json(path):
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20:20 + length])


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_each_level_reads_back(tmp_path, chain, suffix):
    path = tmp_path / f"chain{suffix}"
    write_lods(chain, path, [0.25, 0.0625, 0.0])
    for level, mesh in enumerate(chain):
        back = load(path, lod=level)
        assert back.num_triangles == mesh.num_triangles
        # positions survive as float32; compare as sorted sets (glTF splits vertices)
        a = torch.sort(mesh.v_pos[mesh.t_pos_idx].reshape(-1, 9), dim=0).values
        b = torch.sort(back.v_pos[back.t_pos_idx].reshape(-1, 9), dim=0).values
        assert torch.allclose(a, b, atol=1e-6)
    # the default is the finest level, which is all a viewer without MSFT_lod sees
    assert load(path).num_triangles == chain[0].num_triangles


def test_document_layout(tmp_path, chain):
    path = tmp_path / "chain.glb"
    write_lods(chain, path, [0.25, 0.0625, 0.0])
    doc = _json(path)
    assert "MSFT_lod" in doc["extensionsUsed"]
    assert "MSFT_lod" not in doc.get("extensionsRequired", [])
    assert doc["scenes"][0]["nodes"] == [0]  # coarser levels stay outside the scene
    ids = doc["nodes"][0]["extensions"]["MSFT_lod"]["ids"]
    assert len(ids) == 2 and 0 not in ids
    assert doc["nodes"][0]["extras"]["MSFT_screencoverage"] == [0.25, 0.0625, 0.0]
    counts = [sum(doc["accessors"][p["indices"]]["count"] // 3
                  for p in doc["meshes"][doc["nodes"][n]["mesh"]]["primitives"])
              for n in [0, *ids]]
    assert counts == [m.num_triangles for m in chain]
    # every level keeps its own textures
    assert len(doc["materials"]) == 3
    assert len({doc["materials"][i]["pbrMetallicRoughness"]["baseColorTexture"]["index"]
                for i in range(3)}) == 3


def test_validator_accepts_the_chain(tmp_path, chain, gltf_validator):
    path = tmp_path / "chain.glb"
    write_lods(chain, path, [0.25, 0.0625, 0.0])
    messages = gltf_validator([path])[0]["issues"]["messages"]
    # the validator does not know MSFT_lod, so it names the extension and calls the
    # coarser levels' nodes unused (infos, severity 2); nothing else may appear
    assert all(m["severity"] == 2 for m in messages), messages
    assert {(m["code"], m.get("pointer")) for m in messages} == {
        ("UNSUPPORTED_EXTENSION", "/extensionsUsed/1"), ("UNUSED_OBJECT", "/nodes/1"),
        ("UNUSED_OBJECT", "/nodes/2")}


def test_a_level_beyond_the_chain_is_one_error(tmp_path, chain):
    path = tmp_path / "chain.glb"
    write_lods(chain, path, [0.25, 0.0625, 0.0])
    with pytest.raises(InputFileError, match=r"LOD 3, but its MSFT_lod chain has 3 levels"):
        load(path, lod=3)


@pytest.mark.parametrize("coverage, match", [
    ([0.5, 0.1], "one value per level"),
    ([0.5, 0.5, 0.0], "decrease"),
    ([1.5, 0.5, 0.0], "decrease within"),
])
def test_bad_coverage(tmp_path, chain, coverage, match):
    with pytest.raises(ValueError, match=match):
        write_lods(chain, tmp_path / "x.glb", coverage)
    assert not (tmp_path / "x.glb").exists()


def test_a_viewer_without_msft_lod_shows_level_0(tmp_path, chain, threejs):
    """three.js has no MSFT_lod: it must draw the chain's file exactly as level 0's own
    file (the coarser levels stay outside the scene), and not as a coarser level."""
    from difflod.evaluate.evaluate import render_threejs
    from difflod.io import save
    from difflod.scene.views import fixed_views

    files = {"chain": tmp_path / "chain.glb", "lod0": tmp_path / "lod0.glb",
             "lod2": tmp_path / "lod2.glb"}
    write_lods(chain, files["chain"], [0.25, 0.0625, 0.0])
    save(chain[0], files["lod0"])
    save(chain[2], files["lod2"])
    ref = make("spiky", 3000, 0, 64)
    pics = render_threejs(ref, {"chain": chain[0], "lod0": chain[0], "lod2": chain[2]},
                          fixed_views(2, 0), 64, files)
    assert torch.equal(pics["chain"][0], pics["lod0"][0])
    assert not torch.equal(pics["chain"][1], pics["lod2"][1])  # a coarser silhouette differs
