"""Edge adjacency of a triangle mesh, as `antialias` needs it.

For each triangle f and each of its edges k (from `tris[f,k]` to
`tris[f,(k+1)%3]`), the third vertex of the triangle on the other side of
that edge, or -1 where the edge is a boundary (one triangle) or non-manifold
(three or more). Built once from the triangles (sort of the 3F edge keys,
no Python loops) and reused across calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Topology"]


@dataclass(frozen=True)
class Topology:
    """Edge adjacency of a triangle list.

    Attributes:
        tris: `[F,3]` int64 vertex indices.
        opposite: `[F,3]` int64; opposite[f,k] = third vertex of the neighbour
            across edge (tris[f,k], tris[f,(k+1)%3]), or -1 (boundary or
            non-manifold edge).
    """

    tris: torch.Tensor
    opposite: torch.Tensor

    @classmethod
    def from_tris(cls, tris: torch.Tensor) -> Topology:
        """Build the adjacency of `tris` (`[F,3]` int32/int64, any device)."""
        if not isinstance(tris, torch.Tensor) or tris.dim() != 2 or tris.shape[-1] != 3 \
                or tris.is_floating_point() or tris.dtype == torch.bool:
            got = f"{tris.dtype} {tuple(tris.shape)}" if isinstance(tris, torch.Tensor) \
                else type(tris).__name__
            raise ValueError(f"tris must be an int32/int64 [F,3] tensor, got {got}")
        t = tris.to(torch.long)
        nf = t.shape[0]
        opposite = torch.full((nf * 3,), -1, dtype=torch.long, device=t.device)
        if nf == 0:
            return cls(tris=t, opposite=opposite.reshape(0, 3))
        a = t.reshape(-1)
        b = t[:, [1, 2, 0]].reshape(-1)
        third = t[:, [2, 0, 1]].reshape(-1)
        nv = int(t.max()) + 1
        keys = torch.minimum(a, b) * nv + torch.maximum(a, b)
        keys_sorted, order = torch.sort(keys, stable=True)
        _, counts = torch.unique_consecutive(keys_sorted, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        pair = starts[counts == 2]
        e0, e1 = order[pair], order[pair + 1]
        opposite[e0] = third[e1]
        opposite[e1] = third[e0]
        return cls(tris=t, opposite=opposite.reshape(nf, 3))

    def to(self, device: torch.device | str) -> Topology:
        return Topology(tris=self.tris.to(device), opposite=self.opposite.to(device))
