"""Vertex positions through the (I + lambda L) parameterization of Nicolet et al. 2021.

"Large Steps in Inverse Rendering of Geometry" optimizes u = (I + lambda L) x
instead of the positions x, with L the mesh's combinatorial Laplacian
(D - A). A gradient step on u moves x by (I + lambda L)^-1 times it: the
gradient is smoothed over the surface, so large steps do not tangle the
mesh, and no Laplacian regularizer is needed to keep it smooth.

The system matrix is symmetric positive definite and fixed (the triangles
never change), so it is factored once (sparse Cholesky: cholespy, on the
CPU or the GPU where the tensors are) and each step solves twice: forward
x = M^-1 u, backward grad_u = M^-1 grad_x (M is symmetric).

Own code rather than the `largesteps` package: its matrix builder creates
its tensors on 'cuda' unconditionally, so it cannot run on a CPU.
"""

from __future__ import annotations

import torch

from difflod.geometry.normals import check_faces, check_positions

__all__ = ["SmoothPositions"]


class _Solve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, solver):  # type: ignore[override]
        ctx.solver = solver
        return solver.solve(u)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return ctx.solver.solve(grad), None


class SmoothPositions:
    """x = (I + lambda L)^-1 u for a fixed triangle list.

    Args:
        t_pos_idx: `[F,3]` int triangles; num_vertices: V.
        smoothing: lambda > 0.
        device: where the factor and the solves live.
    """

    def __init__(self, t_pos_idx: torch.Tensor, num_vertices: int, smoothing: float,
                 device: torch.device) -> None:
        import cholespy

        if not smoothing > 0:
            raise ValueError(f"smoothing must be > 0, got {smoothing!r}")
        check_faces("t_pos_idx", t_pos_idx, num_vertices)
        idx = t_pos_idx.long().cpu()
        a = torch.cat([idx[:, 0], idx[:, 1], idx[:, 2]])
        b = torch.cat([idx[:, 1], idx[:, 2], idx[:, 0]])
        pairs = torch.stack([torch.cat([a, b]), torch.cat([b, a])], dim=1)
        pairs = torch.unique(pairs[pairs[:, 0] != pairs[:, 1]], dim=0)
        degree = torch.bincount(pairs[:, 0], minlength=num_vertices).to(torch.float64)
        diag = torch.arange(num_vertices)
        rows = torch.cat([diag, pairs[:, 0]])
        cols = torch.cat([diag, pairs[:, 1]])
        vals = torch.cat([1.0 + smoothing * degree,
                          torch.full((pairs.shape[0],), -smoothing, dtype=torch.float64)])
        self.num_vertices = num_vertices
        self.matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals,
                                              (num_vertices, num_vertices)).coalesce()
        self._factor = cholespy.CholeskySolverF(
            num_vertices, rows.to(torch.int32).to(device), cols.to(torch.int32).to(device),
            vals.to(device), cholespy.MatrixType.COO)

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """M^-1 rhs for `[V,C]` float32 (not differentiable; see `positions`)."""
        out = torch.empty_like(rhs)
        self._factor.solve(rhs.detach().contiguous(), out)
        return out

    def to_param(self, v_pos: torch.Tensor) -> torch.Tensor:
        """u = M x for positions `[V,3]` (float32, the solver's device)."""
        check_positions("v_pos", v_pos)
        m = self.matrix.to(device=v_pos.device, dtype=torch.float64)
        return (m @ v_pos.detach().double()).to(torch.float32)

    def positions(self, u: torch.Tensor) -> torch.Tensor:
        """x = M^-1 u, differentiable in u."""
        return _Solve.apply(u, self)
