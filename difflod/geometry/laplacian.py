"""Uniform ("umbrella") Laplacian regulariser, as nvdiffmodeling uses it.

For vertex i with neighbours N(i): (L x)_i = mean_{j in N(i)} x_j - x_i.
The loss is `mean((L x)**2)` over all V*3 entries -- nvdiffmodeling's
`laplace_regularizer_const` normalisation (a mean over vertices *and*
coordinates, i.e. mean over vertices of |L x_i|^2 divided by 3). Vertices
without neighbours contribute 0 (and still count in the mean).

Absolute form: x = v_pos. Relative form (nvdiffmodeling's
`relative_laplacian`): x = v_pos - v_ref, which penalises changes of the
local shape against a reference (the base mesh) instead of curvature itself.

Neighbours are the unique vertices sharing an edge. nvdiffmodeling collects
the "next" vertex of each triangle corner instead; on a closed manifold mesh
both give the same set, on open boundaries difflod uses the symmetric set.

The adjacency is built once (`UniformLaplacian`) and reused each step; it is
applied with `index_add`, which works on every device and dtype and is
differentiable.
"""

from __future__ import annotations

import torch

from difflod.geometry.normals import check_faces, check_positions

__all__ = ["UniformLaplacian", "laplacian_loss"]


class UniformLaplacian:
    """Precomputed uniform Laplacian of a fixed connectivity.

    Args:
        t_pos_idx: `[F,3]` int32/int64 triangles.
        num_vertices: V, the number of positions the triangles index.
    """

    def __init__(self, t_pos_idx: torch.Tensor, num_vertices: int) -> None:
        if not isinstance(num_vertices, int) or num_vertices < 0:
            raise ValueError(f"num_vertices must be a non-negative int, got {num_vertices!r}")
        check_faces("t_pos_idx", t_pos_idx, num_vertices)
        idx = t_pos_idx.long()
        a = torch.cat([idx[:, 0], idx[:, 1], idx[:, 2]])
        b = torch.cat([idx[:, 1], idx[:, 2], idx[:, 0]])
        pairs = torch.stack([torch.cat([a, b]), torch.cat([b, a])], dim=1)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        pairs = torch.unique(pairs, dim=0)
        degree = torch.bincount(pairs[:, 0], minlength=num_vertices)
        self.num_vertices = num_vertices
        self.ix_i = pairs[:, 0]
        self.ix_j = pairs[:, 1]
        self.w_ij = 1.0 / degree[self.ix_i].to(torch.float64)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(L x): `[V,C]` float -> `[V,C]`, (mean of neighbours) - x_i; 0 where no neighbours."""
        if x.dim() != 2 or x.shape[0] != self.num_vertices or not x.is_floating_point():
            raise ValueError(f"x must be a [{self.num_vertices},C] float tensor, "
                             f"got {tuple(x.shape)} {x.dtype}")
        ix_i, ix_j = self.ix_i.to(x.device), self.ix_j.to(x.device)
        w = self.w_ij.to(device=x.device, dtype=x.dtype)[:, None]
        diff = x.index_select(0, ix_j) - x.index_select(0, ix_i)  # backward: index_add
        return torch.zeros_like(x).index_add(0, ix_i, diff * w)

    def matrix(self) -> torch.Tensor:
        """The sparse `[V,V]` float32 matrix L (COO): L x = apply(x)."""
        v = self.num_vertices
        has = torch.zeros(v, dtype=torch.bool)
        has[self.ix_i] = True
        diag = torch.nonzero(has).squeeze(1)
        rows = torch.cat([self.ix_i, diag])
        cols = torch.cat([self.ix_j, diag])
        vals = torch.cat([self.w_ij, -torch.ones(diag.numel(), dtype=torch.float64)])
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals.float(), (v, v),
                                       check_invariants=True).coalesce()

    def loss(self, v_pos: torch.Tensor, v_ref: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar `mean((L x)**2)` with x = v_pos (absolute) or v_pos - v_ref (relative).

        Args:
            v_pos: `[V,3]` float positions.
            v_ref: `[V,3]` reference positions, or None.
        """
        check_positions("v_pos", v_pos)
        x = v_pos
        if v_ref is not None:
            check_positions("v_ref", v_ref)
            if v_ref.shape != v_pos.shape:
                raise ValueError(f"v_ref must have v_pos's shape {tuple(v_pos.shape)}, "
                                 f"got {tuple(v_ref.shape)}")
            x = v_pos - v_ref
        return torch.mean(self.apply(x) ** 2)


def laplacian_loss(v_pos: torch.Tensor, t_pos_idx: torch.Tensor,
                   v_ref: torch.Tensor | None = None) -> torch.Tensor:
    """One-off `UniformLaplacian(t_pos_idx, V).loss(v_pos, v_ref)`; in a loop build it once."""
    check_positions("v_pos", v_pos)
    return UniformLaplacian(t_pos_idx, int(v_pos.shape[0])).loss(v_pos, v_ref)
