"""Where models come from: a file path, or a procedural asset spec.

A model spec is either a path to a model file (OBJ, glTF, GLB) or
`asset:NAME[?key=value&...]`, a procedural model of difflod.assets, e.g.
`asset:spiky?triangles=30000&texture_res=512`. Configs, the CLI and the
batch runner accept both, so demos and tests need no files.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from difflod.errors import DiffLodError, InputFileError
from difflod.io.limits import ReadLimits
from difflod.mesh import Mesh

__all__ = ["ASSET_PREFIX", "open_model"]

ASSET_PREFIX = "asset:"
_ASSET_KEYS = {"triangles": int, "seed": int, "texture_res": int}


def _asset(spec: str, limits: ReadLimits) -> Mesh:
    from difflod import assets

    body = spec[len(ASSET_PREFIX):]
    name, _, query = body.partition("?")
    kwargs: dict[str, int] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in _ASSET_KEYS:
            raise DiffLodError(f"{spec}: unknown asset option {key!r}; valid: "
                               f"{', '.join(sorted(_ASSET_KEYS))}")
        try:
            kwargs[key] = _ASSET_KEYS[key](value)
        except ValueError:
            raise DiffLodError(f"{spec}: asset option {key!r} must be an integer, "
                               f"got {value!r}") from None
    if "triangles" in kwargs:
        limits.check(spec, "max_triangles", kwargs["triangles"],
                     f"asks for {kwargs['triangles']} triangles")
    if "texture_res" in kwargs:
        limits.check(spec, "max_texture_size", kwargs["texture_res"],
                     f"asks for {kwargs['texture_res']}-pixel textures")
    return assets.make(name, **kwargs)


def open_model(spec: str | Path, *, mtl_override: str | Path | None = None,
               hint: str | None = None, limits: ReadLimits | None = None) -> Mesh:
    """Load a model from a file path or an `asset:` spec.

    Args:
        spec: path or asset spec.
        mtl_override: an MTL file whose materials replace the OBJ's own.
        hint: added to the "missing file" message (e.g. where to put it).
        limits: what a file may declare (sizes checked before allocating) and
            whether its references may leave its folder; an asset's triangles
            and texture_res are held to them too. Default `ReadLimits()`.
    Raises:
        InputFileError / DiffLodError with one line naming the file or spec.
    """
    limits = ReadLimits() if limits is None else limits
    text = str(spec)
    if text.startswith(ASSET_PREFIX):
        return _asset(text, limits)
    path = Path(text)
    if not path.is_file():
        extra = f" ({hint})" if hint else ""
        raise InputFileError(path, f"no such model file{extra}")
    from difflod.io import load

    if mtl_override is not None:
        if path.suffix.lower() != ".obj":
            raise InputFileError(path, "mtl_override only applies to OBJ models")
        override = Path(mtl_override)
        if not override.is_file():
            raise InputFileError(override, "no such MTL file (mtl_override)")
        return load(path, limits=limits, mtl_override=override)
    return load(path, limits=limits)
