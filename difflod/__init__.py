"""difflod: appearance-driven 3D model simplification by differentiable rendering.

The public API, re-exported lazily so that `import difflod` stays cheap and
compiles nothing: Mesh, Material, Skin, load, save, DiffLodError.
Further entry points live in their modules (difflod.render.ops,
difflod.run.train, difflod.run.simplify, difflod.evaluate).
"""

from __future__ import annotations

from difflod.errors import ConfigError, DiffLodError, InputFileError
from difflod.io import load, save
from difflod.mesh import Material, Mesh, Skin

__all__ = [
           "ConfigError",
           "DiffLodError",
           "InputFileError",
           "Material",
           "Mesh",
           "Skin",
           "load",
           "save",
]
