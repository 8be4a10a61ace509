from __future__ import annotations

import pytest
import torch

from difflod.geometry.normals import vertex_normals
from difflod.geometry.tangents import vertex_tangents, with_tangents
from difflod.mesh import Mesh

from ._shapes import grid, uv_sphere


def _plane(uv_fn=None):
    v, f, uv = grid(3)
    if uv_fn is not None:
        uv = uv_fn(v)
    return Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=f)


def _bitangent(m: Mesh) -> torch.Tensor:
    n = m.v_nrm[m.t_nrm_idx.reshape(-1)]
    t = m.v_tng[m.t_tng_idx.reshape(-1)]
    return t[:, 3:] * torch.linalg.cross(n, t[:, :3])


def test_plane_tangent_is_plus_u_bitangent_is_minus_v() -> None:
    # u = (x+1)/2 grows along +x; glTF v = (1-y)/2 grows along -y (first row at the top)
    m = with_tangents(_plane())
    t = m.v_tng[m.t_tng_idx.reshape(-1)]
    torch.testing.assert_close(t, torch.tensor([[1.0, 0, 0, 1]]).expand_as(t))
    b = _bitangent(m)
    torch.testing.assert_close(b, torch.tensor([[0.0, 1, 0]]).expand_as(b))  # = -dP/dv
    assert m.v_tng.shape[0] == 16  # one tangent per vertex: no seams, no mirroring


def test_mirrored_uv_gives_negative_handedness() -> None:
    m = with_tangents(_plane(lambda v: torch.stack([(1 - v[:, 0]) / 2, (1 - v[:, 1]) / 2], 1)))
    t = m.v_tng[m.t_tng_idx.reshape(-1)]
    torch.testing.assert_close(t, torch.tensor([[-1.0, 0, 0, -1]]).expand_as(t))
    torch.testing.assert_close(_bitangent(m), torch.tensor([[0.0, 1, 0]]).expand(54, 3))


def test_mirror_seam_splits_tangents() -> None:
    # left half maps u = (x+1), right half mirrors it: u = 1-x (symmetric around x=0)
    v, f, _ = grid(4)
    uv = torch.stack([1 - v[:, 0].abs(), (1 - v[:, 1]) / 2], 1)
    m = with_tangents(Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=f))
    t = m.v_tng[m.t_tng_idx.reshape(-1)]
    centre_x = m.v_pos[m.t_pos_idx.reshape(-1)].reshape(-1, 3, 3).mean(1)[:, 0]
    right = centre_x.repeat_interleave(3) > 0
    assert bool((t[right, 3] == -1).all()) and bool((t[~right, 3] == 1).all())
    assert m.v_tng.shape[0] == 25 + 5  # the 5 vertices on the mirror line are split


def test_sphere_tangent_east_bitangent_north() -> None:
    v, f, uv = uv_sphere(8, 16)
    nrm = v / v.norm(dim=1, keepdim=True)
    v_tng, t_idx = vertex_tangents(v, f, uv, f, nrm, f)
    corner_pos = v[f.reshape(-1)]
    t = v_tng[t_idx.reshape(-1)]
    keep = corner_pos[:, 2].abs() < 0.9  # away from the poles
    phi = torch.atan2(corner_pos[:, 1], corner_pos[:, 0])
    east = torch.stack([-torch.sin(phi), torch.cos(phi), torch.zeros_like(phi)], 1)
    n = nrm[f.reshape(-1)]
    north = torch.linalg.cross(n, east)  # toward +z = toward v=0 (first texel row)
    assert float((t[keep, :3] * east[keep]).sum(1).min()) > 0.98
    b = t[:, 3:] * torch.linalg.cross(n, t[:, :3])
    assert float((b[keep] * north[keep]).sum(1).min()) > 0.98
    assert bool((t[:, 3] == 1).all())
    # the seam column u=0 / u=1 has its own UV indices, so seam vertices are split
    assert v_tng.shape[0] >= len(torch.unique(f))


def test_degenerate_uv_fallback() -> None:
    v, f, _ = grid(1)
    uv = torch.full((4, 2), 0.5)
    m = with_tangents(Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=f))
    assert torch.isfinite(m.v_tng).all()
    torch.testing.assert_close(m.v_tng[:, :3].norm(dim=1), torch.ones(len(m.v_tng)))
    assert float((m.v_tng[:, :3] @ torch.tensor([0.0, 0, 1])).abs().max()) < 1e-6


def test_gradcheck_positions() -> None:
    g = torch.Generator().manual_seed(3)
    v = (torch.rand(5, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1, 0.3],
         dtype=torch.float64)).requires_grad_()
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4]])
    uv = torch.rand(5, 2, generator=g, dtype=torch.float64)

    def fn(x: torch.Tensor) -> torch.Tensor:
        n = vertex_normals(x, f)
        return vertex_tangents(x, f, uv, f, n, f)[0][:, :3]
    assert torch.autograd.gradcheck(fn, (v,))


def test_validation() -> None:
    v, f, uv = grid(1)
    n = torch.tensor([[0.0, 0, 1]]).repeat(4, 1)
    with pytest.raises(ValueError, match="v_tex"):
        vertex_tangents(v, f, uv[:, :1], f, n, f)
    with pytest.raises(ValueError, match="t_nrm_idx"):
        vertex_tangents(v, f, uv, f, n, f[:1])
    with pytest.raises(ValueError, match="no UVs"):
        with_tangents(Mesh(v_pos=v, t_pos_idx=f))


def test_unique_corners_equals_row_unique():
    """The packed-scalar unique gives torch's row-wise unique: rows, order, inverse."""
    from difflod.geometry.tangents import _unique_corners

    g = torch.Generator().manual_seed(3)
    key = torch.stack([torch.randint(0, 7, (500,), generator=g),
                       torch.randint(0, 5, (500,), generator=g),
                       torch.randint(0, 3, (500,), generator=g),
                       torch.randint(0, 2, (500,), generator=g) * 2 - 1], dim=1)
    ref_u, ref_i = torch.unique(key, dim=0, return_inverse=True)
    got_u, got_i = _unique_corners(key, 7, 5, 3)
    assert torch.equal(got_u, ref_u) and torch.equal(got_i, ref_i)
    big_u, big_i = _unique_corners(key, 2**21, 2**21, 2**21)  # too wide to pack: row-wise
    assert torch.equal(big_u, ref_u) and torch.equal(big_i, ref_i)
