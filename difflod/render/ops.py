"""The differentiable rendering primitives, in one place.

Each op lives in its own module (rasterize, peel, interpolate, texture,
antialias) as a private torch.autograd.Function plus a public validating
function; this module re-exports the public functions. Conventions (clip
space, raster layout, row 0 = bottom) are in DESIGN.md.
"""

from __future__ import annotations

from difflod.render.antialias import antialias
from difflod.render.interpolate import interpolate
from difflod.render.peel import DepthPeeler
from difflod.render.rasterize import rasterize
from difflod.render.texture import texture, texture_mips

__all__ = ["DepthPeeler", "antialias", "interpolate", "rasterize", "texture", "texture_mips"]
