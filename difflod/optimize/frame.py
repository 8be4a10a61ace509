"""The reference's unit frame: where optimization happens, and the way back.

Training runs with the reference centred on the origin and scaled so its
longest side is 2 (nvdiffmodeling's unit_size / center_by_reference with
mesh_scale 2). `Frame` remembers that similarity transform so results are
written back in the reference's own coordinates, where they overlay it in a
modelling tool or game engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from difflod.geometry.transform import reference_matrix, transform
from difflod.mesh import Mesh

__all__ = ["Frame"]


@dataclass(frozen=True)
class Frame:
    """The reference's bounds; x_unit = (x - centre) * 2 / longest side."""

    lo: torch.Tensor  # [3]
    hi: torch.Tensor  # [3]

    @classmethod
    def from_mesh(cls, mesh: Mesh) -> Frame:
        lo, hi = mesh.aabb()
        return cls(lo=lo.detach().cpu(), hi=hi.detach().cpu())

    def matrix(self) -> torch.Tensor:
        """`[4,4]` float64 map to the unit frame (geometry.transform.reference_matrix)."""
        return reference_matrix((self.lo, self.hi), 2.0)

    def to_unit(self, mesh: Mesh) -> Mesh:
        return transform(mesh, self.matrix().float())

    def from_unit(self, mesh: Mesh) -> Mesh:
        return transform(mesh, torch.linalg.inv(self.matrix()).float())

    @staticmethod
    def fit_aabb(mesh: Mesh, target: Mesh) -> Mesh:
        """Scale and move `mesh` per axis so its bounding box matches `target`'s
        (nvdiffmodeling's align_with_reference for a unit base mesh)."""
        lo, hi = mesh.aabb()
        tlo, thi = target.aabb()
        ext = (hi - lo).double()
        text = (thi - tlo).double()
        s = torch.where(ext > 1e-12, text / ext.clamp_min(1e-12), torch.ones_like(ext))
        m = torch.eye(4, dtype=torch.float64)
        m[0, 0], m[1, 1], m[2, 2] = s[0], s[1], s[2]
        m[:3, 3] = (tlo + thi).double() * 0.5 - (lo + hi).double() * 0.5 * s
        return transform(mesh, m.float())
