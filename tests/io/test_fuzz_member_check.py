"""The glTF document's fast member test agrees with the walk that names the bad member.

`gltf_json.parse_document` runs the fast yes/no test (C-level passes, for the
fuzzer's and a big file's sake) and walks the document with `check_member`
only when it says no. Were the fast test to accept what the walk refuses, a
malformed file would reach the reader unchecked; this replaces every member
of written files by values of each wrong kind and requires both to agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from difflod import assets
from difflod.errors import InputFileError
from difflod.io import gltf
from difflod.io.gltf_json import _DOCUMENT_FITS, SCHEMA, check_member

# one of each JSON kind, and the numbers at the edges: beyond float, beyond
# int64, non-finite (json.loads reads NaN and Infinity), bool (not an integer)
REPLACEMENTS = [10**400, 10**19, -1, 2.5, float("nan"), float("inf"), True, "x", None,
                [], [1, "a"], {}, {"a": 1}]


def _leaves(node: Any, at: tuple = ()) -> Iterator[tuple]:
    yield at
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:2]):  # the first two items stand for the rest
            yield from _leaves(v, (*at, i))


def _walk_accepts(doc: Any) -> bool:
    try:
        check_member(doc, SCHEMA, "", Path("x.gltf"))
    except InputFileError:
        return False
    return True


@pytest.mark.parametrize("asset", ["skinned_cylinder", "multi_material"])
def test_fast_test_agrees_with_the_walk(tmp_path: Path, asset: str) -> None:
    path = tmp_path / "m.gltf"
    gltf.write(assets.make(asset, triangles=24, seed=0, texture_res=4), path)
    doc = json.loads(path.read_text())
    assert _DOCUMENT_FITS(doc) and _walk_accepts(doc)
    checked = refused = 0
    for at in list(_leaves(doc))[1:]:
        parent = doc
        for key in at[:-1]:
            parent = parent[key]
        kept = parent[at[-1]]
        for value in REPLACEMENTS:
            parent[at[-1]] = value
            fast, walk = _DOCUMENT_FITS(doc), _walk_accepts(doc)
            assert fast == walk, (at, value)
            checked += 1
            refused += not walk
        parent[at[-1]] = kept
    # most replacements land on members difflod reads and are refused
    assert checked > 500 and refused > checked // 3, (checked, refused)
