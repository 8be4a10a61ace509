"""OBJ/MTL reader and writer: features, round trips, bad input, property tests."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from difflod.errors import InputFileError, OutputFileError
from difflod.io import obj
from difflod.io.image import linear_to_srgb, srgb_to_linear, write_image
from difflod.mesh import Material, Mesh


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


QUAD = """# a quad
o thing
g group
s 1
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 0.25
vt 0 1
vn 0 0 1
f 1/1/1 2/2/1 3/3/1 4/4/1
"""


def test_quad_fan_triangulated_and_v_flipped(tmp_path: Path) -> None:
    m = obj.read(_write(tmp_path, "q.obj", QUAD))
    assert m.t_pos_idx.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert m.t_tex_idx.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert m.v_tex[:, 1].tolist() == [1.0, 1.0, 0.75, 0.0]  # v_difflod = 1 - v_obj
    assert m.v_nrm.tolist() == [[0.0, 0.0, 1.0]] and m.t_nrm_idx.tolist() == [[0] * 3] * 2
    assert m.v_pos.dtype == torch.float32 and m.t_pos_idx.dtype == torch.int64
    assert len(m.materials) == 1 and m.t_mat.tolist() == [0, 0]


def test_crlf_continuation_indent_and_negative_indices(tmp_path: Path) -> None:
    text = ("v 0 0 0\r\nv 1 0 0\r\n  v 0 1 \\\r\n 0\r\n\r\n# c\r\nf -3 -2 -1\r\n"
            "v 5 5 5\r\nf 1 -1 \\\n 2\n")
    m = obj.read(_write(tmp_path, "c.obj", text))
    assert m.v_pos.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]]
    assert m.t_pos_idx.tolist() == [[0, 1, 2], [0, 3, 1]]
    assert m.v_tex is None and m.v_nrm is None


def test_face_forms_and_partial_uvs(tmp_path: Path) -> None:
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0.5 0.5\nvn 0 0 1\nf 1/1 2/1 3/1\nf 1//1 2//1 3//1\n"
    m = obj.read(_write(tmp_path, "p.obj", text))
    # the face without vt points to an added (0,0) UV; normals partial -> dropped
    assert m.v_tex.tolist() == [[0.5, 0.5], [0.0, 0.0]]
    assert m.t_tex_idx.tolist() == [[0, 0, 0], [1, 1, 1]]
    assert m.v_nrm is None
    m = obj.read(_write(tmp_path, "q.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0 1\nvn 0 0 1\nvt 1\n"
                                        "f 1//1 2//1 3//1\n"))
    assert m.v_nrm is not None and m.v_tex is None


MTL = """# lib
newmtl red
Kd 1 0 0
Ks 0.1 0.2 0.3
d 0.5
newmtl pbr
Kd 0.5 0.5 0.5
Pr 0.7
Pm 1
newmtl shiny
Ns 98
Tr 0.0
illum 2
"""


def _two_mat_obj(folder: Path, mtl: str = MTL) -> Path:
    _write(folder, "lib one.mtl", mtl)
    return _write(folder, "m.obj", "mtllib lib one.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\n"
                                   "f 1 2 3\nusemtl pbr\nf 1 2 3\nusemtl red\nf 3 2 1\n"
                                   "usemtl pbr\nf 2 3 1\nusemtl shiny\nf 1 3 2\n")


def test_mtl_values_and_material_order(tmp_path: Path) -> None:
    m = obj.read(_two_mat_obj(tmp_path))
    assert [x.name for x in m.materials] == ["default", "pbr", "red", "shiny"]
    assert m.t_mat.tolist() == [0, 1, 2, 1, 3]
    red, pbr, shiny = m.materials[2], m.materials[1], m.materials[3]
    torch.testing.assert_close(red.kd.flatten(), torch.tensor([1.0, 0.0, 0.0, 0.5]))
    assert red.alpha_mode == "BLEND"  # d 0.5: half see-through everywhere
    torch.testing.assert_close(red.ks.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(pbr.kd.flatten(), srgb_to_linear(torch.full((3,), 0.5)))
    torch.testing.assert_close(pbr.ks.flatten(), torch.tensor([0.0, 0.7, 1.0]))
    assert pbr.alpha_mode == "OPAQUE" and pbr.kd.shape[-1] == 3
    assert shiny.kd.shape[-1] == 3  # Tr 0 = opaque
    assert shiny.ks.flatten()[0] == 0.0 and shiny.ks.flatten()[2] == 0.0


def test_mtl_ns_is_read_as_roughness_not_alpha(tmp_path: Path) -> None:
    """`Ns` is a Blinn-Phong exponent; ks.y is glTF roughness (GGX alpha = roughness^2).

    Two references written apart from mtl.py: trimesh's MTL-to-PBR conversion, and
    the GGX lobe whose peak D(h = n) = 1 / (pi alpha^2) equals the normalized
    Blinn-Phong peak (Ns + 2) / (2 pi). Reading Ns as alpha (the old formula) gives
    0.141 for Ns 98 where both say 0.376.
    """
    from trimesh.visual.material import SimpleMaterial

    for ns in (1.0, 10.0, 98.0, 1000.0):
        m = obj.read(_two_mat_obj(tmp_path, MTL.replace("Ns 98", f"Ns {ns:g}")))
        rough = float(m.materials[3].ks.flatten()[1])
        assert rough == pytest.approx(SimpleMaterial(glossiness=ns).to_pbr().roughnessFactor,
                                      rel=1e-6), ns
        alpha = rough * rough
        assert 1.0 / (math.pi * alpha * alpha) == pytest.approx((ns + 2) / (2 * math.pi),
                                                                rel=1e-5), ns


def test_single_material_without_usemtl(tmp_path: Path) -> None:
    _write(tmp_path, "a.mtl", "newmtl only\nKd 0 1 0\n")
    m = obj.read(_write(tmp_path, "a.obj", "mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"))
    assert [x.name for x in m.materials] == ["only"]
    # the one material is the file's, not the default grey: Kd 0 1 0 (sRGB 0 and 1 are
    # linear 0 and 1), and the face uses it
    torch.testing.assert_close(m.materials[0].kd.flatten(), torch.tensor([0.0, 1.0, 0.0]))
    assert m.t_mat is None or m.t_mat.tolist() == [0]


def test_several_mtllib(tmp_path: Path) -> None:
    _write(tmp_path, "a.mtl", "newmtl x\nKd 1 1 1\n")
    _write(tmp_path, "b.mtl", "newmtl y\nKd 0 0 0\n")
    _write(tmp_path, "c.mtl", "newmtl z\nKd 0 0 0\n")
    p = _write(tmp_path, "a.obj", "mtllib a.mtl b.mtl\nmtllib c.mtl\nv 0 0 0\nv 1 0 0\n"
                                  "v 0 1 0\nusemtl z\nf 1 2 3\nusemtl y\nf 1 2 3\n"
                                  "usemtl x\nf 1 2 3\n")
    m = obj.read(p)
    assert [x.name for x in m.materials] == ["z", "y", "x"] and m.t_mat.tolist() == [0, 1, 2]


def test_trailing_comments(tmp_path: Path) -> None:
    m = obj.read(_write(tmp_path, "c.obj", "v 0 0 0 # origin\nv 1 0 0\nv 0 1 0#x\n"
                                           "f 1 2 3 # one\n"))
    assert m.v_pos.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert m.t_pos_idx.tolist() == [[0, 1, 2]]


def test_mtl_tr_map_bump_disp_and_kd_alpha(tmp_path: Path) -> None:
    rgba = torch.ones(2, 3, 4)
    rgba[0, 0, 3] = 0.0
    write_image(tmp_path / "rgba.png", rgba)
    write_image(tmp_path / "n.png", torch.tensor([[[0.5, 0.5, 1.0]]]))
    write_image(tmp_path / "d.png", torch.full((2, 2, 1), 0.25), bits=16)
    _write(tmp_path, "a.mtl", "newmtl tr\nTr 0.25\nnewmtl tex\nmap_Kd rgba.png\n"
                              "map_Bump -bm 2 n.png\ndisp d.png\n")
    p = _write(tmp_path, "a.obj", "mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl tr\n"
                                  "f 1 2 3\nusemtl tex\nf 1 2 3\n")
    tr, tex = obj.read(p).materials
    assert tr.kd.shape == (1, 1, 4) and float(tr.kd[0, 0, 3]) == 0.75 and tr.alpha_mode == "BLEND"
    assert tex.kd.shape == (2, 3, 4) and float(tex.kd[0, 0, 3]) == 0.0
    assert tex.alpha_mode == "MASK" and tex.alpha_cutoff == 0.5  # a clear hole: a cut-out
    assert tex.normal_scale == 2.0
    torch.testing.assert_close(tex.normal[0, 0], torch.tensor([0.0039, 0.0039, 1.0]), atol=1e-3,
                               rtol=0)
    assert tex.displacement.shape == (2, 2, 1)
    assert float((tex.displacement - 0.25).abs().max()) < 1e-4
    out = tmp_path / "out" / "mesh.obj"
    obj.write(obj.read(p), out)
    back = obj.read(out).materials[1]
    assert float((back.displacement - 0.25).abs().max()) < 1e-4
    assert (out.parent / "texture_d_1.png").is_file()


def test_mtl_textures(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    kd_file = torch.rand(4, 5, 3, generator=g)
    ks_file = torch.rand(4, 5, 3, generator=g)
    n_file = torch.rand(2, 2, 3, generator=g)
    d_file = torch.tensor([[0.2, 1.0], [1.0, 1.0]])[..., None]
    write_image(tmp_path / "tex" / "my kd.png", kd_file)
    write_image(tmp_path / "tex" / "ks.png", ks_file)
    write_image(tmp_path / "tex" / "n.png", n_file)
    write_image(tmp_path / "tex" / "a.png", d_file)
    _write(tmp_path, "tex/m.mtl",
           "newmtl t\nKd 0 0 0\nmap_Kd -o 0 0 -s 1 1 1 -blendu on my kd.png\n"
           "map_Ks ks.png\nmap_d -clamp on a.png\nnorm -bm 0.5 n.png\n")
    _write(tmp_path, "t.obj", "mtllib tex/m.mtl\nusemtl t\nv 0 0 0\nv 1 0 0\nv 0 1 0\n"
                              "f 1 2 3\n")
    mat = obj.read(tmp_path / "t.obj").materials[0]
    q = 1 / 255
    assert mat.kd.shape == (4, 5, 4) and mat.alpha_mode == "BLEND"  # its one hole is 0.2
    assert float((mat.kd[..., :3] - srgb_to_linear(kd_file)).abs().max()) < 0.01
    assert float((mat.ks - ks_file).abs().max()) <= q
    assert float((mat.normal - (n_file * 2 - 1)).abs().max()) <= 2 * q
    assert mat.normal_scale == 0.5
    assert float(mat.kd[0, 0, 3]) < 0.5 and float(mat.kd[-1, -1, 3]) == 1.0


def _rand_mesh(seed: int, mats: int = 1) -> Mesh:
    g = torch.Generator().manual_seed(seed)
    nv, nf = 30, 40
    materials = []
    for i in range(mats):
        materials.append(Material(
            name=f"mat {i}",
            kd=torch.rand(8, 6, 4 if i == 0 else 3, generator=g),
            ks=torch.rand(5, 7, 3, generator=g) if i == 0 else torch.tensor([[[0.0, 0.25, 1.0]]]),
            normal=torch.nn.functional.normalize(torch.rand(4, 4, 3, generator=g) * 2 - 1, dim=-1),
            normal_scale=0.75, alpha_mode="MASK" if i == 0 else "OPAQUE"))
    return Mesh(v_pos=torch.randn(nv, 3, generator=g),
                t_pos_idx=torch.randint(0, nv, (nf, 3), generator=g),
                v_tex=torch.rand(25, 2, generator=g),
                t_tex_idx=torch.randint(0, 25, (nf, 3), generator=g),
                v_nrm=torch.nn.functional.normalize(torch.randn(20, 3, generator=g), dim=-1),
                t_nrm_idx=torch.randint(0, 20, (nf, 3), generator=g),
                t_mat=torch.randint(0, mats, (nf,), generator=g), materials=tuple(materials))


def test_round_trip_multi_material(tmp_path: Path) -> None:
    m = _rand_mesh(0, mats=2)
    out = tmp_path / "out" / "mesh.obj"
    obj.write(m, out)
    files = sorted(p.name for p in out.parent.iterdir())
    assert files == sorted(["mesh.mtl", "mesh.obj", "texture_kd.png", "texture_ks.png",
                            "texture_n.png", "texture_kd_1.png", "texture_n_1.png"])
    r = obj.read(out)
    for f in ("v_pos", "v_tex", "v_nrm"):
        torch.testing.assert_close(getattr(r, f), getattr(m, f), rtol=0, atol=1e-6)
    for f in ("t_pos_idx", "t_tex_idx", "t_nrm_idx"):
        assert torch.equal(getattr(r, f), getattr(m, f)), f
    # materials come back in order of first use: compare through names
    assert [r.materials[i].name for i in r.t_mat] == [m.materials[i].name for i in m.t_mat]
    by_name = {x.name: x for x in r.materials}
    for b in m.materials:
        a = by_name[b.name]
        assert a.name == b.name and a.kd.shape == b.kd.shape
        # sRGB 8-bit: error below one code step in sRGB space
        assert float((linear_to_srgb(a.kd[..., :3]) - linear_to_srgb(b.kd[..., :3]))
                     .abs().max()) <= 0.5 / 255 + 1e-5
        assert float((a.ks - b.ks).abs().max()) <= 0.5 / 255 + 1e-6
        assert float((a.normal - b.normal).abs().max()) <= 1 / 255 + 1e-6
        assert a.normal_scale == b.normal_scale and a.alpha_mode == b.alpha_mode
    # MASK's alpha is written as it is (8 bits), its mode and cutoff in difflod's comment
    a0, b0 = by_name["mat 0"], m.materials[0]
    assert float((a0.kd[..., 3] - b0.kd[..., 3]).abs().max()) <= 0.5 / 255 + 1e-6
    assert (a0.alpha_mode, a0.alpha_cutoff) == (b0.alpha_mode, b0.alpha_cutoff)
    text = (out.parent / "mesh.mtl").read_text()
    assert "map_d texture_kd.png" in text and "bump -bm 0.75 texture_n.png" in text


def test_round_trip_positions_only_and_uv_flip_in_file(tmp_path: Path) -> None:
    m = Mesh(v_pos=torch.tensor([[0.1, 0.2, 0.3], [1, 0, 0], [0, 1, 0]]),
             t_pos_idx=torch.tensor([[0, 1, 2]]),
             v_tex=torch.tensor([[0.25, 0.125]]), t_tex_idx=torch.zeros(1, 3, dtype=torch.int64))
    obj.write(m, tmp_path / "a.obj")
    text = (tmp_path / "a.obj").read_text()
    # normals are always written (the renderer's), so faces are v/t/n as nvdiffmodeling reads
    assert "vt 0.25 0.875" in text and "f 1/1/1 2/1/2 3/1/3" in text
    assert "Kd 0.7" in (tmp_path / "a.mtl").read_text()  # default 0.5 linear grey -> sRGB
    r = obj.read(tmp_path / "a.obj")
    assert torch.equal(r.v_pos, m.v_pos) and torch.equal(r.v_tex, m.v_tex)


def test_write_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(obj, "write_image", boom)
    with pytest.raises(OutputFileError, match=r": disk full$"):
        obj.write(_rand_mesh(1), tmp_path / "mesh.obj")
    assert list(tmp_path.iterdir()) == []


BAD = [
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", 4, "out of range"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 0\n", 4, "out of range"),
    ("v 0 0 0\nv 1 0 0\nf -3 1 2\nv 0 1 0\n", 3, "out of range"),
    ("v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n", 2, "NaN"),
    ("v 0 0 0\nv 1 0 inf\nv 0 1 0\nf 1 2 3\n", 2, "NaN"),
    ("v 0 0 0\nv 1 0x 0\nv 0 1 0\nf 1 2 3\n", 2, "malformed"),
    ("v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n", 2, "at least 3"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", 4, "3 corners"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3.5\n", 4, "malformed"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/ 3/1\n", 5, "malformed"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/1/1/1 2 3\n", 4, "malformed"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/2 3/1\n", 5, "texture coordinate"),
    ("v 0 0 0\nv 1 \xff 0\nv 0 1 0\nf 1 2 3\n", 2, "malformed"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nmtllib nope.mtl\n", 5, "not found"),
    ("mtllib ../evil.mtl\n", 1, "outside"),
    ("mtllib /etc/passwd\n", 1, "outside"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 \\\n3\nf 1 2 3 q\n", 6, "malformed"),
]


@pytest.mark.parametrize("text,line,what", BAD)
def test_bad_obj_names_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    p = _write(tmp_path / "model", "bad.obj", text.encode("latin-1"))
    with pytest.raises(InputFileError, match=rf"bad\.obj: line {line}: .*{what}"):
        obj.read(p)


BAD_MTL = [
    ("newmtl a\nKd 1 x 0\n", 2, "expects numbers"),
    ("Kd 1 1 1\n", 1, "before any newmtl"),
    ("newmtl a\nmap_Kd missing.png\n", 2, "not found"),
    ("newmtl a\nmap_Kd broken.png\n", 2, "cannot decode"),
    ("newmtl a\nmap_Kd ../../out.png\n", 2, "outside"),
    ("newmtl a\nbump -bm\n", 2, "needs 1 argument|no file name"),
    ("newmtl a\nd nan\n", 2, "NaN"),
]


@pytest.mark.parametrize("text,line,what", BAD_MTL)
def test_bad_mtl_names_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    folder = tmp_path / "model"
    _write(folder, "lib.mtl", text)
    _write(folder, "broken.png", b"\x89PNG\r\n\x1a\ngarbage")
    p = _write(folder, "m.obj", "mtllib lib.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InputFileError, match=rf"lib\.mtl: line {line}: .*({what})"):
        obj.read(p)


def test_unknown_usemtl(tmp_path: Path) -> None:
    _write(tmp_path, "a.mtl", "newmtl x\n")
    p = _write(tmp_path, "a.obj", "mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl y\nf 1 2 3\n")
    with pytest.raises(InputFileError, match=r"a\.obj: line 5: usemtl 'y'"):
        obj.read(p)
    p = _write(tmp_path, "b.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl y\nf 1 2 3\n")
    assert obj.read(p).materials[0].name == "y"


# ---- property tests --------------------------------------------------------------

_coord = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_valid_obj(tmp_path: Path, data: st.DataObject) -> None:
    nv = data.draw(st.integers(3, 12))
    verts = data.draw(st.lists(st.tuples(_coord, _coord, _coord), min_size=nv, max_size=nv))
    nt = data.draw(st.integers(0, 5))
    uvs = data.draw(st.lists(st.tuples(_coord, _coord), min_size=nt, max_size=nt))
    corner = st.tuples(st.integers(0, nv - 1), st.integers(0, max(nt - 1, 0)))
    faces = data.draw(st.lists(st.lists(corner, min_size=3, max_size=6), min_size=0, max_size=10))
    neg = data.draw(st.booleans())
    eol = data.draw(st.sampled_from(["\n", "\r\n"]))
    lines = [f"v {x!r} {y!r} {z!r}" for x, y, z in verts] + [f"vt {u!r} {v!r}" for u, v in uvs]
    for f in faces:
        lines.append("f " + " ".join(
            str(i - nv if neg else i + 1) + (f"/{j - nt if neg else j + 1}" if nt else "")
            for i, j in f))
    p = tmp_path / "r.obj"
    p.write_text(eol.join(lines) + eol)
    m = obj.read(p)
    assert m.v_pos.tolist() == [list(v) for v in verts]
    fan = [[0, k, k + 1] for f in faces for k in range(1, len(f) - 1)]
    tri = [f for f in faces for _ in range(1, len(f) - 1)]
    assert m.t_pos_idx.tolist() == [[f[c][0] for c in t] for f, t in zip(tri, fan)]
    if nt and faces:
        assert m.t_tex_idx.tolist() == [[f[c][1] for c in t] for f, t in zip(tri, fan)]
        want = [[u, float(np.float32(1) - np.float32(v))] for u, v in uvs]
        assert m.v_tex.tolist() == want
    else:
        assert m.v_tex is None


_garbage = st.lists(st.sampled_from(list("vtnf0123456789 -./#\\\n\r\te+gsou")
                                    + ["usemtl ", "nan", "v ", "f ", "vt ", "vn ", "\nv 1 2 3",
                                       "\nf 1 2 3", "//", "\xe9", "\x00"]),
                    max_size=60).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_garbage)
def test_garbage_never_crashes(tmp_path: Path, text: str) -> None:
    p = tmp_path / "g.obj"
    p.write_text(text)
    try:
        m = obj.read(p)
    except InputFileError as e:
        assert str(e).startswith(str(p)) and re.search(r"line \d+|v_pos|t_", str(e))
    else:
        m.validate()


# ---- mtl_override -------------------------------------------------------------------

def test_mtl_override_replaces_mtllib_materials(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(5)
    kd_img = torch.rand(3, 4, 3, generator=g)
    write_image(tmp_path / "over" / "tex" / "kd.png", kd_img)
    _write(tmp_path, "over/o.mtl", "newmtl b\nKd 0 1 0\nnewmtl a\nmap_Kd tex/kd.png\n"
                                   "newmtl unused\nKd 1 1 1\n")
    _write(tmp_path, "model/own.mtl", "newmtl a\nKd 1 0 0\nnewmtl b\nKd 0 0 1\n")
    p = _write(tmp_path, "model/m.obj", "mtllib own.mtl\nmtllib missing.mtl\n"
                                        "v 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl a\nf 1 2 3\n"
                                        "usemtl b\nf 1 3 2\nusemtl a\nf 2 3 1\n")
    mesh = obj.read(p, mtl_override=tmp_path / "over" / "o.mtl")
    assert [m.name for m in mesh.materials] == ["a", "b"]
    assert mesh.t_mat.tolist() == [0, 1, 0]
    # a's texture came from the override's folder; b's constant from the override too
    assert float((mesh.materials[0].kd - srgb_to_linear(kd_img)).abs().max()) < 0.01
    assert torch.allclose(mesh.materials[1].kd, torch.tensor([[[0.0, 1.0, 0.0]]]))
    # through difflod.io.load as models.py calls it
    from difflod.io import load
    again = load(p, mtl_override=tmp_path / "over" / "o.mtl")
    assert torch.equal(again.materials[0].kd, mesh.materials[0].kd)


def test_mtl_override_missing_name_names_both_files(tmp_path: Path) -> None:
    over = _write(tmp_path, "o.mtl", "newmtl a\nKd 0 1 0\n")
    p = _write(tmp_path, "m.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl a\nf 1 2 3\n"
                                  "usemtl zz\nf 1 3 2\n")
    with pytest.raises(InputFileError, match=r"m\.obj: line 6: usemtl 'zz': no such "
                                             r"material in the mtl_override file '.*o\.mtl'"):
        obj.read(p, mtl_override=over)
    empty = _write(tmp_path, "empty.mtl", "# nothing\n")
    with pytest.raises(InputFileError, match=r"usemtl 'a': .*empty\.mtl"):
        obj.read(p, mtl_override=empty)
    with pytest.raises(InputFileError, match=r"nope\.mtl: no such MTL file"):
        obj.read(p, mtl_override=tmp_path / "nope.mtl")


def test_mtl_override_textures_may_not_escape_its_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "kd.png", torch.rand(2, 2, 3))
    over = _write(tmp_path, "over/o.mtl", "newmtl a\nmap_Kd ../kd.png\n")
    p = _write(tmp_path, "m.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl a\nf 1 2 3\n")
    with pytest.raises(InputFileError, match=r"o\.mtl: line 2: path '../kd.png' leads outside"):
        obj.read(p, mtl_override=over)


def test_mtl_override_single_material_without_usemtl(tmp_path: Path) -> None:
    over = _write(tmp_path, "o.mtl", "newmtl only\nKd 0.5 0.25 0\n")
    p = _write(tmp_path, "m.obj", "mtllib gone.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    mesh = obj.read(p, mtl_override=over)
    assert mesh.materials[0].name == "only"
    # the override's values, not the missing library's default: Kd is sRGB, so 0.5 and
    # 0.25 read as linear 0.2140 and 0.0509 (IEC 61966-2-1)
    torch.testing.assert_close(mesh.materials[0].kd.flatten(),
                               torch.tensor([0.21404, 0.05088, 0.0]), atol=1e-4, rtol=0)


def test_glass_comes_back_see_through_and_a_shared_atlas_is_written_once(
        tmp_path: Path) -> None:
    """The simplified glass (one atlas: a BLEND shell and an OPAQUE copy on the
    core, base/opaque_split.py) through OBJ + MTL: the modes come back, the alpha
    within one 8-bit step, and the textures both materials share are one file."""
    from difflod.config import TrainConfig
    from difflod.models import open_model
    from difflod.run.simplify import base_mesh

    glass, _, _ = base_mesh(open_model("asset:glass?triangles=2000&texture_res=64"), 100,
                         TrainConfig(texture_res=[32, 32]))
    blend, opaque = glass.materials
    assert (blend.alpha_mode, opaque.alpha_mode) == ("BLEND", "OPAQUE")
    assert opaque.ks is blend.ks and opaque.normal is blend.normal
    out = tmp_path / "glass.obj"
    obj.write(glass, out)
    back = {m.name: m for m in obj.read(out).materials}  # in order of first use
    assert (back[blend.name].alpha_mode, back[opaque.name].alpha_mode) == ("BLEND", "OPAQUE")
    assert float((back[blend.name].kd[..., 3] - blend.kd[..., 3]).abs().max()) \
        <= 0.5 / 255 + 1e-6
    assert back[opaque.name].kd.shape[-1] == 3
    # the RGBA atlas, its RGB twin for the OPAQUE copy, one ks and one normal map
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "texture_kd.png", "texture_kd_1.png", "texture_ks.png", "texture_n.png"]
    text = (tmp_path / "glass.mtl").read_text()
    assert text.count("map_Ks texture_ks.png") == 2 and text.count("bump texture_n.png") == 2


def test_a_cut_out_with_soft_edges_reads_as_mask(tmp_path: Path) -> None:
    """A leaf's alpha: clear around it, opaque inside, a ring of partial texels
    at the edge (fewer than the clear ones): MASK, cutoff 0.5."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    alpha = ((0.8 - (xx ** 2 + yy ** 2).sqrt()) * 8).clamp(0, 1)[..., None]
    assert 0 < int(((alpha > 0.05) & (alpha < 0.95)).sum()) < int((alpha <= 0.05).sum())
    write_image(tmp_path / "leaf.png", torch.cat([torch.full((32, 32, 3), 0.3), alpha], -1))
    _write(tmp_path, "leaf.mtl", "newmtl leaf\nmap_Kd leaf.png\n")
    p = _write(tmp_path, "leaf.obj", "mtllib leaf.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\n"
                                     "usemtl leaf\nf 1 2 3\n")
    leaf = obj.read(p).materials[0]
    assert leaf.alpha_mode == "MASK" and leaf.alpha_cutoff == 0.5


def test_alpha_and_its_mode_come_back_as_written(tmp_path: Path) -> None:
    """The alpha is written as it is (within one 8-bit step), and the mode and
    cutoff through difflod's comment: a soft-edged MASK at 0.3, a haze that is
    MASK though most of its texels are partial, and a BLEND that is mostly clear
    (the alpha alone would read as BLEND, MASK, MASK)."""
    from difflod.mesh import Material, Mesh

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    soft = ((0.8 - (xx ** 2 + yy ** 2).sqrt()) * 8).clamp(0, 1)[..., None]
    haze = 0.2 + 0.6 * soft  # every see-through texel partial
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    idx = torch.tensor([[0, 1, 2]])
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    for name, alpha, mode, cutoff in (("soft", soft, "MASK", 0.3), ("haze", haze, "MASK", 0.5),
                                      ("clear glass", soft, "BLEND", 0.5)):
        kd = torch.cat([torch.full((32, 32, 3), 0.3), alpha], -1)
        mat = Material(name="leaf", kd=kd, alpha_mode=mode, alpha_cutoff=cutoff)
        mesh = Mesh(v_pos=pos, t_pos_idx=idx, v_tex=uv, t_tex_idx=idx.clone(), materials=(mat,))
        out = tmp_path / name / "leaf.obj"
        out.parent.mkdir()
        obj.write(mesh.validate(), out)
        assert f"# difflod alpha_mode {mode} {cutoff:g}" in (out.parent / "leaf.mtl").read_text()
        back = obj.read(out).materials[0]
        assert (back.alpha_mode, back.alpha_cutoff) == (mode, cutoff), name
        assert float((back.kd[..., 3:] - alpha).abs().max()) <= 0.5 / 255 + 1e-6, name


def test_a_malformed_alpha_mode_comment_is_a_comment(tmp_path: Path) -> None:
    """Only the exact form difflod writes is read; anything else is skipped as
    the comment it is, and the mode comes from the alpha."""
    write_image(tmp_path / "a.png", torch.cat([torch.full((4, 4, 3), 0.3),
                                               torch.full((4, 4, 1), 0.4)], -1))
    for i, line in enumerate(("# difflod alpha_mode MASK", "# difflod alpha_mode CUT 0.5",
                              "# difflod alpha_mode MASK 2", "# difflod alpha_mode MASK x")):
        _write(tmp_path, f"m{i}.mtl", f"newmtl m\n{line}\nmap_Kd a.png\n")
        p = _write(tmp_path, f"m{i}.obj", f"mtllib m{i}.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\n"
                                          "usemtl m\nf 1 2 3\n")
        mat = obj.read(p).materials[0]
        assert (mat.alpha_mode, mat.alpha_cutoff) == ("BLEND", 0.5), line
