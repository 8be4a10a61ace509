"""Low-level glTF 2.0 input: the JSON document, buffers, accessors and images.

`GltfSource` opens a `.gltf` or `.glb`, checks the container, and decodes
accessors (byteStride, normalized integers, sparse, no bufferView) and images
(data URIs, bufferViews, files beside the model) on demand, caching each in
the instance. Every problem raises `InputFileError` naming the file and the
accessor/buffer/image, e.g. "accessor 3 (POSITION of mesh 0 primitive 1): ...".

The JSON is parsed and its members' types checked by difflod.io.gltf_json; the
GLB container is split here so that a truncated file gets a precise message
instead of a deep traceback.
URIs may only name files inside the model's folder (no absolute paths, no
`..` escapes, no `file:` URIs) unless `ReadLimits.allow_outside_paths`; remote
schemes are always refused (difflod.io.paths). Every size the file declares
(accessor counts, buffer byteLength, data URIs, image headers, the size of
each file read) is checked against the `ReadLimits` before memory is taken.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
from pathlib import Path
from typing import Any

import numpy as np

from difflod.errors import InputFileError
from difflod.io.gltf_json import JsonObject, parse_document
from difflod.io.image import open_image
from difflod.io.limits import ReadLimits
from difflod.io.paths import resolve_reference

__all__ = ["COMPONENT_DTYPES", "TYPE_WIDTHS", "GltfSource"]

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942

COMPONENT_DTYPES: dict[int, np.dtype] = {
    5120: np.dtype("<i1"), 5121: np.dtype("<u1"), 5122: np.dtype("<i2"),
    5123: np.dtype("<u2"), 5125: np.dtype("<u4"), 5126: np.dtype("<f4"),
}
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def _split_glb(path: Path, data: bytes) -> tuple[str, memoryview | None]:
    """Split a GLB container into (JSON text, BIN chunk or None)."""
    if len(data) < 12:
        raise InputFileError(path, f"truncated GLB: {len(data)} bytes, the header alone is 12")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != GLB_MAGIC:
        raise InputFileError(path, "not a GLB file (no 'glTF' magic)")
    if version != 2:
        raise InputFileError(path, f"GLB version {version} is not supported (expected 2)")
    if length > len(data):
        raise InputFileError(path, f"truncated GLB: header says {length} bytes, "
                                   f"file has {len(data)}")
    json_text: str | None = None
    bin_chunk: bytes | None = None
    offset = 12
    index = 0
    while offset < length:
        if offset + 8 > length:
            raise InputFileError(path, f"truncated GLB: chunk {index} header cut off")
        chunk_len, chunk_type = struct.unpack_from("<II", data, offset)
        start, end = offset + 8, offset + 8 + chunk_len
        if end > length:
            raise InputFileError(path, f"truncated GLB: chunk {index} needs {chunk_len} "
                                       f"bytes, {length - start} remain")
        if chunk_type == CHUNK_JSON and json_text is None:
            try:
                json_text = data[start:end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputFileError(path, f"GLB JSON chunk is not UTF-8: {exc}") from None
        elif chunk_type == CHUNK_BIN and bin_chunk is None:
            bin_chunk = memoryview(data)[start:end]  # no copy of a large chunk
        offset = end
        index += 1
    if json_text is None:
        raise InputFileError(path, "GLB has no JSON chunk")
    return json_text, bin_chunk


def _decode_data_uri(path: Path, what: str, uri: str, limits: ReadLimits) -> bytes:
    header, _, payload = uri.partition(",")
    if ";base64" not in header:
        raise InputFileError(path, f"{what}: data URI is not base64")
    size = len(payload) * 3 // 4
    limits.check(path, "max_file_bytes", size, f"{what}: data URI holds about {size} bytes")
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise InputFileError(path, f"{what}: bad base64 data URI: {exc}") from None


class GltfSource:
    """An opened glTF file: the checked JSON document plus decoded binary data.

    Args:
        path: the `.gltf` or `.glb` file.
        limits: sizes allowed, and whether URIs may leave the model's folder.
    """

    def __init__(self, path: Path, limits: ReadLimits) -> None:
        self.path = Path(path)
        self.limits = limits
        limits.check_file(self.path)
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
        self.glb_bin: memoryview | None = None
        if raw[:4] == GLB_MAGIC or self.path.suffix.lower() == ".glb":
            text, self.glb_bin = _split_glb(self.path, raw)
        else:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise InputFileError(path, f"glTF JSON is not UTF-8: {exc}") from None
        self.doc: JsonObject = parse_document(self.path, text)
        self._buffers: dict[int, memoryview] = {}
        self._images: dict[int, np.ndarray] = {}

    # ---- errors and lookups ---------------------------------------------------
    def error(self, message: str) -> InputFileError:
        return InputFileError(self.path, message)

    def item(self, kind: str, index: Any, what: str) -> Any:
        """`doc.<kind>[index]`, or an InputFileError naming `what` and the bad index."""
        items = getattr(self.doc, kind) or []
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(items):
            raise self.error(f"{what} refers to {kind[:-1]} {index!r}, but the file has "
                             f"{len(items)} {kind}")
        return items[index]

    def item_of(self, items: list[Any] | None, index: Any, what: str) -> Any:
        """`items[index]` of a nested list (e.g. animation samplers), checked."""
        items = items or []
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(items):
            raise self.error(f"{what} {index!r} is out of range ({len(items)} entries)")
        return items[index]

    # ---- URIs and buffers ---------------------------------------------------------
    def _external(self, what: str, uri: str) -> bytes:
        def fail(message: str) -> InputFileError:
            return self.error(f"{what}: URI {message}")

        base = self.path.resolve().parent
        target = resolve_reference(uri, base, base, self.limits.allow_outside_paths, fail,
                                   uri=True)
        if not target.is_file():
            raise self.error(f"{what}: file {uri!r} not found")
        self.limits.check_file(target, f"{what}: file {uri!r}")
        try:
            return target.read_bytes()
        except OSError as exc:
            raise self.error(f"{what}: cannot read {uri!r}: {exc.strerror or exc}") from None

    def _load_uri(self, what: str, uri: Any) -> bytes:
        if not isinstance(uri, str):
            raise self.error(f"{what}: uri must be a string, got {uri!r}")
        if uri.startswith("data:"):
            return _decode_data_uri(self.path, what, uri, self.limits)
        return self._external(what, uri)

    def buffer(self, index: int, what: str) -> memoryview:
        """Bytes of buffer `index` (exactly its byteLength), as a view without copy."""
        if index in self._buffers:
            return self._buffers[index]
        buf = self.item("buffers", index, what)
        name = f"buffer {index}"
        declared = buf.byteLength
        if not isinstance(declared, int) or isinstance(declared, bool) or declared < 0:
            raise self.error(f"{name}: byteLength {declared!r} is not a non-negative integer")
        self.limits.check(self.path, "max_file_bytes", declared,
                          f"{name}: byteLength declares {declared} bytes")
        if buf.uri is None:
            if self.glb_bin is None or index != 0:
                raise self.error(f"{name}: no uri and no GLB binary chunk")
            data = self.glb_bin
        else:
            data = self._load_uri(name, buf.uri)
            if buf.uri.startswith("data:") and len(data) > declared:
                raise self.error(f"{name}: data URI holds {len(data)} bytes, more than the "
                                 f"declared byteLength {declared}")
        if len(data) < declared:
            raise self.error(f"{name}: byteLength is {declared} but only {len(data)} bytes "
                             f"are available")
        data = memoryview(data)[:declared]
        self._buffers[index] = data
        return data

    def view_bytes(self, index: int, what: str) -> tuple[memoryview, int | None]:
        """(bytes of bufferView `index`, its byteStride or None)."""
        view = self.item("bufferViews", index, what)
        data = self.buffer(view.buffer, f"bufferView {index}")
        offset, length = view.byteOffset or 0, view.byteLength
        if not isinstance(length, int) or offset < 0 or offset + length > len(data):
            raise self.error(f"bufferView {index}: bytes {offset}..{offset}+{length} are out "
                             f"of bounds of buffer {view.buffer} ({len(data)} bytes)")
        return data[offset:offset + length], view.byteStride

    # ---- accessors ------------------------------------------------------------------
    def accessor(self, index: Any, what: str, normalize: bool = True,
                 noun: str | None = "elements") -> np.ndarray:
        """Decode an accessor to a `[count, width]` array.

        Normalized integer accessors become float32 in [0,1] / [-1,1] when
        `normalize`; other integers keep their type; floats are float32.
        Its count is held to `limits.max_vertices` (in errors, "declares N
        <noun>"); `noun=None` when the caller checked the count itself
        (indices, against max_triangles).
        """
        acc = self.item("accessors", index, what)
        label = f"accessor {index} ({what})"
        dtype = COMPONENT_DTYPES.get(acc.componentType)
        width = TYPE_WIDTHS.get(acc.type)
        count = acc.count
        if dtype is None:
            raise self.error(f"{label}: unknown componentType {acc.componentType!r}")
        if width is None:
            raise self.error(f"{label}: unknown type {acc.type!r}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise self.error(f"{label}: count {count!r} is not a non-negative integer")
        if noun is not None:
            self.limits.check(self.path, "max_vertices", count,
                              f"{label} declares {count} {noun}")
        if acc.bufferView is None:
            out = np.zeros((count, width), dtype)
        else:
            out = self._dense(acc, label, dtype, width, count)
        if acc.sparse is not None:
            out = self._apply_sparse(acc.sparse, label, out)
        if normalize and acc.normalized and dtype.kind in "iu":
            info = np.iinfo(dtype)
            out = np.maximum(out.astype(np.float32) / float(info.max), -1.0)
        return out.astype(np.float32, copy=False) if out.dtype.kind == "f" else out

    def _dense(self, acc: Any, label: str, dtype: np.dtype, width: int, count: int) -> np.ndarray:
        data, stride = self.view_bytes(acc.bufferView, label)
        elem = dtype.itemsize * width
        stride = stride or elem
        offset = acc.byteOffset or 0
        if stride < elem:
            raise self.error(f"{label}: byteStride {stride} is smaller than the element "
                             f"size {elem}")
        end = offset + stride * (count - 1) + elem if count else offset
        if offset < 0 or end > len(data):
            raise self.error(f"{label}: needs bytes {offset}..{end} but bufferView "
                             f"{acc.bufferView} has {len(data)}; out of bounds")
        if count == 0:
            return np.zeros((0, width), dtype)
        arr = np.ndarray((count, width), dtype=dtype, buffer=data, offset=offset,
                         strides=(stride, dtype.itemsize))
        return np.array(arr)

    def _apply_sparse(self, sparse: Any, label: str, out: np.ndarray) -> np.ndarray:
        n = sparse.count
        if not isinstance(n, int) or n < 0 or n > len(out):
            raise self.error(f"{label}: sparse count {n!r} is invalid for {len(out)} elements")
        idx_dtype = COMPONENT_DTYPES.get(sparse.indices.componentType)
        if idx_dtype is None or idx_dtype.kind != "u":
            raise self.error(f"{label}: sparse indices componentType "
                             f"{sparse.indices.componentType!r} is not unsigned")
        parts = []
        for part, dtype, width in ((sparse.indices, idx_dtype, 1),
                                   (sparse.values, out.dtype, out.shape[1])):
            data, _ = self.view_bytes(part.bufferView, f"{label} sparse")
            offset = part.byteOffset or 0
            size = n * dtype.itemsize * width
            if offset < 0 or offset + size > len(data):
                raise self.error(f"{label}: sparse data needs bytes {offset}..{offset + size} "
                                 f"but bufferView {part.bufferView} has {len(data)}; "
                                 "out of bounds")
            parts.append(np.frombuffer(data, dtype, n * width, offset).reshape(n, width))
        indices, values = parts[0][:, 0].astype(np.int64), parts[1]
        if n and int(indices.max()) >= len(out):
            raise self.error(f"{label}: sparse index {int(indices.max())} out of range for "
                             f"{len(out)} elements")
        out = out.copy()
        out[indices] = values
        return out

    # ---- images -----------------------------------------------------------------------
    def image(self, index: Any, what: str) -> np.ndarray:
        """Image `index` as `[H,W,C]` float32 in [0,1] (C = 3 or 4), values as stored."""
        if isinstance(index, int) and index in self._images:
            return self._images[index]
        img = self.item("images", index, what)
        name = f"image {index}"
        if img.uri is not None:
            data = self._load_uri(name, img.uri)
        elif img.bufferView is not None:
            data, _ = self.view_bytes(img.bufferView, name)
        else:
            raise self.error(f"{name}: has neither uri nor bufferView")
        arr = _decode_image(self.path, name, data, self.limits)
        self._images[index] = arr
        return arr


def _decode_image(path: Path, name: str, data: bytes, limits: ReadLimits) -> np.ndarray:
    """PNG/JPEG bytes -> `[H,W,C]` float32 in [0,1]; 16-bit PNGs keep their precision."""
    im = open_image(io.BytesIO(data), path, limits, name)
    try:
        with im:
            im.load()
            if im.mode.startswith("I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
                arr = np.repeat(arr[..., None], 3, axis=2)
            else:
                alpha = "A" in im.getbands() or "transparency" in im.info
                arr = np.asarray(im.convert("RGBA" if alpha else "RGB"),
                                 dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise InputFileError(path, f"{name}: cannot decode image: {exc}") from None
    return np.ascontiguousarray(arr)
