"""Hostile model files, one category at a time: each answers one DiffLodError line.

Categories: truncated files, wrong magic, huge declared counts (checked against
ReadLimits before allocating), bad indices, NaN/Inf values, deep JSON nesting,
bad UTF-8, images (decompression bombs, truncated PNG/JPEG, bad headers and
channel layouts, other formats). Each case is a file built here from bytes;
the expected message is matched, and that it is one line.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from difflod.errors import DiffLodError
from difflod.io import load
from difflod.io.image import read_image
from difflod.io.limits import ReadLimits

TRI_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


# ---- file builders ------------------------------------------------------------------

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, color_type: int = 2, depth: int = 8,
              rows: bytes | None = None) -> bytes:
    """A PNG whose IHDR says `width` x `height`; `rows` the raw scanlines (default: none)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"")
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def bomb_png(side: int = 20000) -> bytes:
    """A real decompression bomb: `side` x `side` gray zeros (400 MB) in about 400 KB."""
    comp = zlib.compressobj(1)
    rows = b"\x00" * ((side + 1) * 1000)  # 1000 rows: filter byte + pixels each
    body = b"".join(comp.compress(rows) for _ in range(side // 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body)
            + _chunk(b"IEND", b""))


def real_png(w: int = 4, h: int = 3, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    arr = (np.arange(w * h * len(mode)) % 251).astype(np.uint8).reshape(h, w, len(mode))
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def real_jpeg(w: int = 16, h: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 100, 50)).save(buf, format="JPEG")
    return buf.getvalue()


def gltf_doc(positions: np.ndarray | None = None, indices: list[int] | None = None,
             image: bytes | None = None) -> dict:
    """A one-primitive glTF document with its buffer as a data URI."""
    pos = np.asarray([[0, 0, 0], [1, 0, 0], [0, 1, 0]] if positions is None else positions,
                     np.float32)
    blob = pos.tobytes()
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": len(blob)}]
    accessors = [{"bufferView": 0, "componentType": 5126, "count": len(pos), "type": "VEC3"}]
    prim: dict = {"attributes": {"POSITION": 0}}
    if indices is not None:
        ib = np.asarray(indices, np.uint32).tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(ib)})
        accessors.append({"bufferView": 1, "componentType": 5125, "count": len(indices),
                          "type": "SCALAR"})
        prim["indices"] = 1
        blob += ib
    doc: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
                 "nodes": [{"mesh": 0}], "meshes": [{"primitives": [prim]}],
                 "accessors": accessors, "bufferViews": views,
                 "buffers": [{"byteLength": len(blob), "uri": "data:application/octet-stream;"
                              "base64," + base64.b64encode(blob).decode()}]}
    if image is not None:
        doc["images"] = [{"uri": "data:image/png;base64," + base64.b64encode(image).decode()}]
        doc["textures"] = [{"source": 0}]
        doc["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
        prim["material"] = 0
    return doc


def glb_bytes(doc: dict, binary: bytes = b"") -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
    if binary:
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunks)) + chunks


def _dump(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def _edit(change: Callable[[dict], None], **kw: object) -> bytes:
    doc = gltf_doc(**kw)  # type: ignore[arg-type]
    change(doc)
    return _dump(doc)


# ---- cases: (id, file name, bytes, expected message regex) ---------------------------

CASES: list[tuple[str, str, bytes, str]] = [
    # truncated
    ("truncated GLB header", "m.glb", b"glTF\x02\x00", r"truncated GLB: 6 bytes"),
    ("truncated GLB chunk", "m.glb", glb_bytes(gltf_doc())[:40], r"truncated GLB: header says"),
    ("truncated OBJ face", "m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2", r"line 4: a face needs"),
    ("truncated glTF JSON", "m.gltf", _dump(gltf_doc())[:-30], r"bad glTF JSON"),
    ("buffer shorter than declared", "m.gltf",
     _edit(lambda d: d["buffers"][0].update(byteLength=400)),
     r"buffer 0: byteLength is 400 but only 36 bytes"),
    # wrong magic
    ("GLB with wrong magic", "m.glb", b"gLTF" + glb_bytes(gltf_doc())[4:],
     r"not a GLB file \(no 'glTF' magic\)"),
    ("GLB version 1", "m.glb", b"glTF\x01\x00\x00\x00" + glb_bytes(gltf_doc())[8:],
     r"GLB version 1 is not supported"),
    ("glTF 1.0 asset", "m.gltf", _edit(lambda d: d["asset"].update(version="1.0")),
     r"only glTF 2.0"),
    # huge declared counts (nothing of that size is allocated)
    ("accessor of 900M vertices", "m.gltf",
     _edit(lambda d: d["accessors"][0].update(count=900_000_000, bufferView=None)),
     (r"accessor 0 \(POSITION of mesh 0 primitive 0\) declares 900000000 vertices, more than "
     r"the limit of 50000000 \(raise it with max_vertices / --max-vertices\)")),
    ("index accessor of 3G indices", "m.gltf",
     _edit(lambda d: d["accessors"][1].update(count=3_000_000_000), indices=[0, 1, 2]),
     (r"mesh 0 primitive 0 declares 1000000000 triangles, more than the limit of 50000000 "
     r"\(raise it with max_triangles / --max-triangles\)")),
    ("buffer of 1 TB", "m.gltf",
     _edit(lambda d: d["buffers"][0].update(byteLength=10 ** 12)),
     r"buffer 0: byteLength declares 1000000000000 bytes, more than the limit"),
    ("sparse count beyond the accessor", "m.gltf",
     _edit(lambda d: d["accessors"][0].update(sparse={
         "count": 10 ** 9, "indices": {"bufferView": 0, "componentType": 5125},
         "values": {"bufferView": 0}})),
     r"sparse count 1000000000 is invalid for 3 elements"),
    # bad indices
    ("OBJ face index out of range", "m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n",
     r"line 4: vertex index 9 out of range \(3 defined so far\)"),
    ("OBJ index 0", "m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", r"vertex index 0"),
    ("glTF index out of range", "m.gltf", _dump(gltf_doc(indices=[0, 1, 7])),
     r"index 7 out of range for 3 vertices"),
    ("glTF accessor reference out of range", "m.gltf",
     _edit(lambda d: d["meshes"][0]["primitives"][0].update(indices=42)),
     r"refers to accessor 42, but the file has 1 accessors"),
    ("glTF node cycle", "m.gltf",
     _edit(lambda d: d.update(nodes=[{"mesh": 0, "children": [1]}, {"children": [0]}])),
     r"node 0 has two parents|cycle"),
    ("negative byteOffset", "m.gltf",
     _edit(lambda d: d["accessors"][0].update(byteOffset=-12)), r"out of bounds"),
    # NaN / Inf
    ("OBJ NaN vertex", "m.obj", b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
     r"line 1: v holds NaN or Inf"),
    ("OBJ Inf normal", "m.obj", TRI_OBJ.encode() + b"vn 0 0 inf\n", r"vn holds NaN or Inf"),
    ("glTF NaN position", "m.gltf", _dump(gltf_doc(positions=np.array(
        [[0, 0, 0], [np.nan, 0, 0], [0, 1, 0]]))), r"POSITION of mesh 0 primitive 0\): holds NaN"),
    ("glTF Inf node scale", "m.gltf",
     _edit(lambda d: d["nodes"][0].update(scale=[1e308, 1e308, 1e308])),
     r"NaN or Inf after applying the node transforms"),
    ("MTL NaN color", "m.obj", b"mtllib m.mtl\n" + TRI_OBJ.encode(), r"m\.mtl: line 2: Kd"),
    # deep JSON nesting
    ("JSON nested 100000 deep", "m.gltf", b"[" * 100_000 + b"]" * 100_000, r"bad glTF JSON"),
    ("extras nested 100000 deep", "m.gltf",
     _dump(gltf_doc())[:-1] + b', "extras": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     r"bad glTF JSON"),
    # members of the wrong type
    ("accessor count as a string", "m.gltf",
     _edit(lambda d: d["accessors"][0].update(count="3")),
     r"accessors\[0\]\.count must be an integer, got '3'"),
    ("attributes as a list", "m.gltf",
     _edit(lambda d: d["meshes"][0]["primitives"][0].update(attributes=[0])),
     r"meshes\[0\]\.primitives\[0\]\.attributes must be an object, got \[0\]"),
    ("NaN literal in a node", "m.gltf",
     _edit(lambda d: d["nodes"][0].update(translation=[float("nan"), 0, 0])),
     r"nodes\[0\]\.translation\[0\] must be a finite number, got nan"),
    ("count beyond float range", "m.gltf",
     _dump(gltf_doc()).replace(b'"count": 3', b'"count": 1e400'),
     r"accessors\[0\]\.count must be an integer, got inf"),
    # bad UTF-8
    ("glTF JSON not UTF-8", "m.gltf", b'{"asset": {"version": "2.0\xff"}}',
     r"glTF JSON is not UTF-8"),
    ("GLB JSON chunk not UTF-8", "m.glb",
     glb_bytes(gltf_doc()).replace(b'"2.0"', b'"2\xff0"'), r"GLB JSON chunk is not UTF-8"),
    ("OBJ number not ASCII", "m.obj", b"v 0 0 0\nv 1 \xc3\xa9 0\nv 0 1 0\nf 1 2 3\n",
     r"line 2: malformed numbers"),
]

IMAGE_CASES: list[tuple[str, bytes, str]] = [
    ("decompression bomb 20000^2", bomb_png(),
     (r"the image is 20000 x 20000 pixels, more than the limit of 16384 \(raise it with "
     r"max_texture_size / --max-texture-size\)")),
    ("header says 65536^2", png_bytes(65536, 65536, color_type=6),
     r"the image is 65536 x 65536 pixels, more than the limit of 16384"),
    ("header says 1000000 x 1", png_bytes(1_000_000, 1), r"the image is 1000000 x 1 pixels, more than"),
    ("header says 0 x 0", png_bytes(0, 0), r"cannot decode the image header|0 x 0"),
    ("truncated PNG", real_png(16, 16)[:50], r"cannot decode"),
    ("truncated JPEG", real_jpeg()[:200], r"cannot decode"),
    ("PNG rows missing", png_bytes(4, 4, rows=b"\x00" * 5), r"cannot decode"),
    ("PNG color type 5", png_bytes(4, 4, color_type=5), r"cannot decode the image header"),
    ("PNG gray 16-bit alpha with depth 3", png_bytes(4, 4, color_type=4, depth=3),
     r"cannot decode the image header"),
    ("GIF", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", r"not a PNG or JPEG file"),
    ("empty file", b"", r"not a PNG or JPEG file"),
]


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text, text
    return text


@pytest.mark.parametrize(("name", "data", "pattern"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_model_file(tmp_path: Path, name: str, data: bytes, pattern: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    (tmp_path / "m.mtl").write_text("newmtl a\nKd nan 0 0\n")
    with pytest.raises(DiffLodError, match=pattern) as info:
        load(path)
    assert _one_line(info.value).startswith(str(tmp_path))  # names the file at fault


@pytest.mark.parametrize(("data", "pattern"), [c[1:] for c in IMAGE_CASES],
                         ids=[c[0] for c in IMAGE_CASES])
def test_hostile_image(tmp_path: Path, data: bytes, pattern: str) -> None:
    path = tmp_path / "t.png"
    path.write_bytes(data)
    with pytest.raises(DiffLodError, match=pattern) as info:
        read_image(path)
    assert _one_line(info.value).startswith(str(path))


@pytest.mark.parametrize(("data", "pattern"), [c[1:] for c in IMAGE_CASES[:3]],
                         ids=[c[0] for c in IMAGE_CASES[:3]])
def test_hostile_image_inside_gltf_and_mtl(tmp_path: Path, data: bytes, pattern: str) -> None:
    """The same images, embedded in a glTF and named by an MTL: same answer, same checks."""
    gl = tmp_path / "m.gltf"
    gl.write_bytes(_dump(gltf_doc(image=data)))
    with pytest.raises(DiffLodError, match=pattern.replace("the image", "image 0")):
        load(gl)
    (tmp_path / "t.png").write_bytes(data)
    (tmp_path / "m.mtl").write_text("newmtl a\nmap_Kd t.png\n")
    (tmp_path / "m.obj").write_text("mtllib m.mtl\nusemtl a\n" + TRI_OBJ)
    with pytest.raises(DiffLodError, match=r"m\.mtl: line 2: texture 't\.png': " + pattern):
        load(tmp_path / "m.obj")


def test_bomb_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header check comes first: decoding the bomb would take 400 MB (1.6 GB as floats)."""
    from PIL import ImageFile

    def no_decode(self: object) -> None:
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    with pytest.raises(DiffLodError, match="20000 x 20000"):
        read_image(path)


def test_raised_texture_limit_lets_a_wide_image_through(tmp_path: Path) -> None:
    """20000 x 1 is refused by the default 16384 and read once the limit is raised."""
    path = tmp_path / "wide.png"
    path.write_bytes(real_png(20000, 1, "L"))
    with pytest.raises(DiffLodError, match=r"20000 x 1 pixels, more than the limit of 16384"):
        read_image(path)
    img = read_image(path, ReadLimits(max_texture_size=20000))
    assert img.shape == (1, 20000, 1)
    # the pixels are the ones written (independent reference: the array given to Pillow)
    assert abs(float(img[0, 257, 0]) - (257 % 251) / 255.0) < 1e-6


@pytest.mark.parametrize(("key", "value", "data", "suffix", "pattern"), [
    ("max_vertices", 2, TRI_OBJ.encode(), ".obj", (r"the file has 3 vertices, more than the "
     r"limit of 2 \(raise it with max_vertices / --max-vertices\)")),
    ("max_triangles", 1, b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 4 3\n", ".obj",
     r"the faces make 2 triangles, more than the limit of 1"),
    ("max_vertices", 2, _dump(gltf_doc()), ".gltf", (r"declares 3 vertices, more than the "
     r"limit of 2")),
    ("max_triangles", 1, _dump(gltf_doc(positions=np.zeros((6, 3)), indices=list(range(6)))),
     ".gltf", r"declares 2 triangles, more than the limit of 1"),
    ("max_file_bytes", 100, TRI_OBJ.encode() * 10, ".obj", (r"file has 320 bytes, more than "
     r"the limit of 100 \(raise it with max_file_bytes / --max-file-bytes\)")),
    ("max_texture_size", 3, _dump(gltf_doc(image=real_png(4, 3))), ".gltf",
     r"image 0 is 4 x 3 pixels, more than the limit of 3"),
])
def test_each_limit_refuses_what_the_default_reads(tmp_path: Path, key: str, value: int,
                                                   data: bytes, suffix: str,
                                                   pattern: str) -> None:
    path = tmp_path / f"m{suffix}"
    path.write_bytes(data)
    assert load(path).num_triangles >= 1  # the default lets it through
    with pytest.raises(DiffLodError, match=pattern):
        load(path, limits=ReadLimits(**{key: value}))


def test_limits_are_validated() -> None:
    with pytest.raises(DiffLodError, match=r"'max_vertices' must be a positive integer, got 0"):
        ReadLimits(max_vertices=0)
    with pytest.raises(DiffLodError, match=r"'allow_outside_paths' must be true or false"):
        ReadLimits(allow_outside_paths="yes")  # type: ignore[arg-type]


def test_a_library_named_many_times_is_read_once(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 `mtllib m.mtl` lines cost one read of m.mtl, not 10,000 (each with textures)."""
    from difflod.io import obj

    (tmp_path / "t.png").write_bytes(real_png(4, 4))
    (tmp_path / "m.mtl").write_text("newmtl a\nmap_Kd t.png\n")
    (tmp_path / "m.obj").write_text("mtllib m.mtl\n" * 10_000 + "usemtl a\n" + TRI_OBJ)
    calls: list[Path] = []
    real = obj.read_mtl
    monkeypatch.setattr(obj, "read_mtl", lambda *a: calls.append(a[0]) or real(*a))
    mesh = load(tmp_path / "m.obj")
    assert len(calls) == 1 and mesh.materials[0].kd.shape == (4, 4, 3)
