"""The glTF JSON document: parsed, its members' types checked, read by attribute.

`parse_document(path, text)` returns a `JsonObject`: `doc.meshes[0].primitives`,
`acc.sparse.indices.componentType`; a member that is absent (or null) reads as None;
`extensions` and `extras` stay plain dicts. Every member difflod reads is
checked against `SCHEMA` first (an integer where the spec says integer, an
object where it says object, finite numbers), so a file of the wrong shape
gets one line naming the member ("meshes[0].primitives[1].indices must be an
integer, got 'x'") instead of a failure deep inside the reader. Members
difflod does not read are not checked.

Why not pygltflib (which still writes glTF, difflod.io.gltf_write): its
`GLTF2.from_json` decodes through dataclasses_json at about 2.4 ms per node
(measured on a shared 2-core CPU: 1,000 empty nodes 2.4 s, 10,000 nodes 24 s,
10,000 accessors 20 s), so a 200 KB file from an unknown source could hold
the reader for minutes. `json.loads` and this check take milliseconds.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from difflod.errors import InputFileError

__all__ = ["SCHEMA", "JsonObject", "check_member", "parse_document"]

# leaf kinds
INT, NUM, STR, BOOL, ANY = "integer", "number", "string", "true/false", "any"
_TEXINFO: dict[str, Any] = {"index": INT, "texCoord": INT, "scale": NUM, "strength": NUM,
                            "extensions": {}, "extras": ANY}
_INDEX_LIST = [INT]
_NUM_LIST = [NUM]

#: the members difflod reads: a dict is an object, a one-item list a list of that
SCHEMA: dict[str, Any] = {
    "asset": {"version": STR},
    "scene": INT,
    "scenes": [{"nodes": _INDEX_LIST}],
    "nodes": [{"children": _INDEX_LIST, "mesh": INT, "skin": INT, "matrix": _NUM_LIST,
               "translation": _NUM_LIST, "rotation": _NUM_LIST, "scale": _NUM_LIST,
               "name": STR}],
    "meshes": [{"primitives": [{"attributes": {"*": INT}, "indices": INT, "material": INT,
                                "mode": INT}]}],
    "accessors": [{"bufferView": INT, "byteOffset": INT, "componentType": INT, "count": INT,
                   "type": STR, "normalized": BOOL,
                   "sparse": {"count": INT,
                              "indices": {"bufferView": INT, "byteOffset": INT,
                                          "componentType": INT},
                              "values": {"bufferView": INT, "byteOffset": INT}}}],
    "bufferViews": [{"buffer": INT, "byteOffset": INT, "byteLength": INT, "byteStride": INT}],
    "buffers": [{"uri": STR, "byteLength": INT}],
    "images": [{"uri": STR, "bufferView": INT, "mimeType": STR}],
    "textures": [{"source": INT}],
    "materials": [{"name": STR, "alphaMode": STR, "alphaCutoff": NUM, "doubleSided": BOOL,
                   "emissiveFactor": _NUM_LIST, "extensions": {},
                   "pbrMetallicRoughness": {"baseColorFactor": _NUM_LIST,
                                            "metallicFactor": NUM, "roughnessFactor": NUM,
                                            "baseColorTexture": _TEXINFO,
                                            "metallicRoughnessTexture": _TEXINFO},
                   "normalTexture": _TEXINFO, "occlusionTexture": _TEXINFO,
                   "emissiveTexture": _TEXINFO}],
    "skins": [{"joints": _INDEX_LIST, "inverseBindMatrices": INT, "name": STR}],
    "animations": [{"name": STR,
                    "channels": [{"sampler": INT, "target": {"node": INT, "path": STR}}],
                    "samplers": [{"input": INT, "output": INT, "interpolation": STR}]}],
    "extensionsRequired": [STR],
    "extensionsUsed": [STR],
}

_FLOAT_MAX = sys.float_info.max
_SCALARS = frozenset({int, float, str, bool, type(None)})
_RAW_MEMBERS = frozenset({"extensions", "extras"})


class JsonObject:
    """Attribute access to a checked JSON object; absent members read as None.

    Each member is wrapped on first access and kept in the instance's
    `__dict__`, so later reads are plain attribute hits (the reader reads the
    same few members of accessors and nodes thousands of times).
    """

    def __init__(self, members: dict[str, Any]) -> None:
        self._members = members

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_members":
            raise AttributeError(name)
        value = self._members.get(name)
        if (type(value) is dict or type(value) is list) and name not in _RAW_MEMBERS:
            value = _wrap(value)
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"JsonObject({self._members!r})"


def _wrap(value: Any) -> Any:
    if type(value) is dict:
        return JsonObject(value)
    if type(value) is list:
        if set(map(type, value)) <= _SCALARS:  # numbers, names: the list as parsed
            return value
        return [_wrap(v) for v in value]
    return value


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool is not an integer here (its type is bool)


def _is_num(v: Any) -> bool:
    if type(v) is float:
        return math.isfinite(v)
    # an integer literal may be beyond any float (math.isfinite would overflow)
    return type(v) is int and -_FLOAT_MAX <= v <= _FLOAT_MAX


def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_bool(v: Any) -> bool:
    return type(v) is bool


def _is_any(v: Any) -> bool:
    return True


# leaf kind -> its test, and the Python types its values may have
_LEAF_OK = {INT: _is_int, NUM: _is_num, STR: _is_str, BOOL: _is_bool, ANY: _is_any}
_LEAF_TYPES = {INT: {int}, NUM: {int, float}, STR: {str}, BOOL: {bool}}


def _all_finite(values: Any) -> bool:
    """Every item an int or float, finite (an int beyond float is not)."""
    if not set(map(type, values)) <= _LEAF_TYPES[NUM]:
        return False
    try:
        return all(map(math.isfinite, values))
    except OverflowError:
        return False


def _fits(schema: Any) -> Callable[[Any], bool]:
    """A test of `schema` that says only yes or no: the document's fast path.

    Leaf lists and maps are checked by C-level passes (`set(map(type, ...))`,
    `all(map(math.isfinite, ...))`), objects by their members present in the
    schema (a key-set intersection), so a file costs about one Python call per
    JSON object. Under coverage instrumentation (the fuzzer) the item-by-item
    walk of `check_member` was about half of a small GLB's read time.
    """
    if isinstance(schema, str):
        return _LEAF_OK[schema]
    if isinstance(schema, list):
        item = schema[0]
        if item == NUM:
            return lambda v: type(v) is list and _all_finite(v)
        if isinstance(item, str) and item != ANY:
            kinds = _LEAF_TYPES[item]
            return lambda v: type(v) is list and set(map(type, v)) <= kinds
        item_ok = _fits(item)
        return lambda v: type(v) is list and all(map(item_ok, v))
    # members of one Python type (integers, names, flags): a type test in place
    typed = {k: next(iter(_LEAF_TYPES[sub])) for k, sub in schema.items()
             if sub in (INT, STR, BOOL)}
    members = {k: _fits(sub) for k, sub in schema.items()
               if k != "*" and k not in typed and sub != ANY}
    star = schema.get("*")
    star_ok = None if star is None else _fits([star])

    def fits(v: Any) -> bool:
        if type(v) is not dict:
            return False
        for k in typed.keys() & v.keys():
            x = v[k]
            if x is not None and type(x) is not typed[k]:  # null reads as absent
                return False
        for k in members.keys() & v.keys():
            x = v[k]
            if x is not None and not members[k](x):
                return False
        return star_ok is None or star_ok(list(v.values()))

    return fits


_DOCUMENT_FITS = _fits(SCHEMA)


def check_member(value: Any, schema: Any, where: str, path: Path) -> None:
    """Raise InputFileError where `value` does not have the shape `schema` says."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise _bad(value, "an object", where, path)
        for key, sub in schema.items():
            if key == "*":
                for k, v in value.items():
                    check_member(v, sub, f"{where}.{k}" if where else k, path)
            elif value.get(key) is not None:  # null reads as absent
                check_member(value[key], sub, f"{where}.{key}" if where else key, path)
        return
    if isinstance(schema, list):
        item = schema[0]
        if not isinstance(value, list):
            raise _bad(value, f"a list of {item if isinstance(item, str) else 'objects'}",
                       where, path)
        for i, v in enumerate(value):
            check_member(v, item, f"{where}[{i}]", path)
        return
    if not _LEAF_OK[schema](value):
        expected = {INT: "an integer", NUM: "a finite number", STR: "a string",
                    BOOL: "true or false"}[schema]
        raise _bad(value, expected, where, path)


def _bad(value: Any, expected: str, where: str, path: Path) -> InputFileError:
    return InputFileError(path, f"{where} must be {expected}, got {_describe(value)}")


def parse_document(path: Path, text: str) -> JsonObject:
    """Parse glTF JSON `text` (from `path`) and check the members difflod reads.

    Raises:
        InputFileError: bad JSON (with its line), a member of the wrong type,
            or an asset version other than 2.x.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"bad glTF JSON: line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise InputFileError(path, "bad glTF JSON: nested too deeply") from None
    except ValueError as exc:  # an integer literal of more digits than Python converts
        raise InputFileError(path, f"bad glTF JSON: {str(exc).split(';')[0]}") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "bad glTF JSON: the document must be an object")
    if not _DOCUMENT_FITS(data):
        check_member(data, SCHEMA, "", path)  # walks it again, to name the bad member
        raise RuntimeError(f"{path}: the fast and the naming member check disagree")
    doc = JsonObject(data)
    version = None if doc.asset is None else doc.asset.version
    if not str(version or "").startswith("2"):
        raise InputFileError(path, f"asset.version is {version!r}; only glTF 2.0 is supported")
    return doc
