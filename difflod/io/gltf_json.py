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
        if name not in _RAW_MEMBERS:
            value = _wrap(value)
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"JsonObject({self._members!r})"


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return JsonObject(value)
    if isinstance(value, list):
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


# leaf kind -> its test; a value that fails one is re-checked slowly for the message
_LEAF_OK = {INT: _is_int, NUM: _is_num, STR: _is_str, BOOL: _is_bool}


def check_member(value: Any, schema: Any, where: str, path: Path) -> None:
    """Raise InputFileError where `value` does not have the shape `schema` says.

    Lists and maps of a leaf kind (indices, matrices, attributes) are checked
    in one `all(map(...))` pass; only a failing one is walked item by item to
    name the bad member.
    """
    if schema == ANY:
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise _bad(value, "an object", where, path)
        for key, sub in schema.items():
            if key == "*":
                ok = _LEAF_OK.get(sub) if isinstance(sub, str) else None
                if ok is not None and all(map(ok, value.values())):
                    continue
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
        ok = _LEAF_OK.get(item) if isinstance(item, str) else None
        if ok is not None and all(map(ok, value)):
            return
        for i, v in enumerate(value):
            check_member(v, item, f"{where}[{i}]", path)
        return
    ok = _LEAF_OK.get(schema)
    if ok is None or ok(value):
        return
    if schema == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(value, "an integer", where, path)
    elif schema == NUM:
        raise _bad(value, "a finite number", where, path)
    elif schema == STR:
        if not isinstance(value, str):
            raise _bad(value, "a string", where, path)
    elif schema == BOOL and not isinstance(value, bool):
        raise _bad(value, "true or false", where, path)


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
    check_member(data, SCHEMA, "", path)
    doc = JsonObject(data)
    version = None if doc.asset is None else doc.asset.version
    if not str(version or "").startswith("2"):
        raise InputFileError(path, f"asset.version is {version!r}; only glTF 2.0 is supported")
    return doc
