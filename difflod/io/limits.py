"""Limits on what a model file may make difflod allocate, checked before allocating.

A file from an unknown source can declare a billion vertices in twenty bytes
of JSON, or a 65536 x 65536 texture in a 100-byte PNG. The readers compare
every such declared size with a `ReadLimits` *before* any array of that size
exists, and refuse with one line that names the limit and the setting that
raises it, e.g. "model.glb: accessor 3 (POSITION of mesh 0 primitive 0)
declares 900000000 vertices, more than the limit of 50000000 (raise it with
max_vertices / --max-vertices)".

The same object says whether file references (glTF URIs, MTL texture paths,
OBJ mtllib names) may leave the model's folder (`allow_outside_paths`).

Each field is a run-configuration key of the same name (difflod.config) and a
command-line flag with dashes (`--max-vertices`). The defaults suit real
assets: tens of millions of triangles, 16k textures, files of a few GiB.
`ReadLimits` is passed explicitly (difflod.io.load, difflod.models.open_model);
there is no global setting. Pillow's own decompression-bomb guard
(`Image.MAX_IMAGE_PIXELS`, a process-wide global) is not relied on: image
headers are checked against `max_texture_size` here (difflod.io.image).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from difflod.errors import ConfigError, InputFileError

__all__ = ["ReadLimits", "limits_from"]


@dataclass(frozen=True)
class ReadLimits:
    """What a model file may declare; every reader checks before allocating.

    Attributes:
        max_vertices: vertices of a model (OBJ `v` lines, the sum of glTF
            POSITION counts), and elements of any one glTF accessor.
        max_triangles: triangles of a model, after triangulation.
        max_texture_size: width and height of any image, in pixels.
        max_file_bytes: bytes of any file read (model, MTL, buffer, image) and
            of any glTF buffer's byteLength or data URI.
        max_animation_matrices: baked keyframes times nodes of a glTF animation
            (each a 4x4 float64 matrix while skins are baked).
        allow_outside_paths: let file references leave the model's folder
            (`..`, absolute paths, symbolic links, `file:` URIs). Other URI
            schemes (http:, ...) are refused regardless: nothing is fetched.
    """

    max_vertices: int = 50_000_000
    max_triangles: int = 50_000_000
    max_texture_size: int = 16384
    max_file_bytes: int = 4 * 1024 ** 3
    max_animation_matrices: int = 10_000_000
    allow_outside_paths: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "allow_outside_paths":
                if not isinstance(value, bool):
                    raise ConfigError(f"read limits: '{f.name}' must be true or false, "
                                      f"got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"read limits: '{f.name}' must be a positive integer, "
                                  f"got {value!r}")

    def check(self, source: str | Path, key: str, value: int, what: str) -> None:
        """Raise InputFileError for `source` when `value` exceeds limit `key`.

        `what` describes the value, e.g. "accessor 3 (POSITION ...) declares
        900000000 vertices"; the message adds the limit and how to raise it.
        """
        limit = getattr(self, key)
        if value > limit:
            raise InputFileError(source, f"{what}, more than the limit of {limit} "
                                         f"(raise it with {key} / --{key.replace('_', '-')})")

    def check_file(self, path: Path, what: str = "file") -> None:
        """Refuse a file larger than max_file_bytes before reading it (by its size on disk)."""
        try:
            size = path.stat().st_size
        except OSError:
            return  # the read itself names the problem
        self.check(path, "max_file_bytes", size, f"{what} has {size} bytes")


def limits_from(settings: Any) -> ReadLimits:
    """The ReadLimits of an object with attributes of the same names (a TrainConfig);
    an attribute that is None keeps the default."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(ReadLimits)}
    return ReadLimits(**{k: v for k, v in values.items() if v is not None})
