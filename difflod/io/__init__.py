"""Model file readers and writers, one module per format, chosen by suffix.

`load(path)` and `save(mesh, path)` dispatch on the file suffix through the
table below; each format module offers `read(path, **options) -> Mesh` and
`write(mesh, path) -> None`. Format modules are imported only when used.
Readers take `limits=` (difflod.io.limits.ReadLimits): what a file may make
them allocate, and whether its references may leave the model's folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from difflod.errors import InputFileError
from difflod.io.limits import ReadLimits
from difflod.mesh import Mesh

__all__ = ["FORMATS", "ReadLimits", "load", "save"]

# suffix -> module under difflod.io
FORMATS: dict[str, str] = {
    ".obj": "obj",
    ".gltf": "gltf",
    ".glb": "gltf",
}


def _module(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputFileError(path, f"unknown model format {suffix or '(no suffix)'!r}; "
                                   f"expected one of {sorted(FORMATS)}")
    return importlib.import_module(f"difflod.io.{FORMATS[suffix]}")


def load(path: str | Path, limits: ReadLimits | None = None, **options: Any) -> Mesh:
    """Read a model file (OBJ/MTL, glTF, GLB) into a validated `Mesh`.

    `limits` bounds what the file may declare (default `ReadLimits()`); other
    options go to the format's reader (e.g. `time=` for glTF animations).
    Raises InputFileError naming the file, and the line or accessor, on bad input.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    return _module(path).read(path, limits=ReadLimits() if limits is None else limits,
                              **options)


def save(mesh: Mesh, path: str | Path) -> None:
    """Write `mesh` to `path`; the suffix picks the format. Written atomically."""
    path = Path(path)
    _module(path).write(mesh, path)
