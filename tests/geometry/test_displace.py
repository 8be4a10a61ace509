from __future__ import annotations

import pytest
import torch

from difflod.geometry.displace import displace, sample_texture, vertex_displacement
from difflod.mesh import Mesh

from ._shapes import grid, uv_sphere


def test_sample_texture_reference_values() -> None:
    tex = torch.tensor([[[0.0], [1.0]], [[2.0], [3.0]]])  # row 0 = [0,1], row 1 = [2,3]
    uv = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [0.0, 0.25],
                       [1.25, 0.25]])
    out = sample_texture(tex, uv)[:, 0]
    # texel centres; centre of the image is the mean; u=0 wraps halfway between cols 1 and 0
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 2.0, 1.5, 0.5, 0.0]))


def test_flat_displacement_moves_plane_along_normal() -> None:
    v, f, uv = grid(2)
    m = Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=f)
    out = displace(m, torch.full((4, 4, 1), 0.25), scale=2.0)
    torch.testing.assert_close(out.v_pos, v + torch.tensor([0.0, 0, 0.5]))


def test_ramp_and_seam_average() -> None:
    # a texture ramp in u: d(u) sampled per vertex; sphere seam vertex averages u=0 and u=1
    w = 8
    ramp = ((torch.arange(w, dtype=torch.float32) + 0.5) / w).reshape(1, w, 1).repeat(4, 1, 1)
    v, f, uv = uv_sphere(4, 8)
    # weld the seam: position of the last column = first column, keep separate UVs
    cols = 9
    pos_idx = f.clone()
    seam = (pos_idx % cols) == cols - 1
    pos_idx[seam] -= cols - 1
    m = Mesh(v_pos=v, t_pos_idx=pos_idx, v_tex=uv, t_tex_idx=f)
    d = vertex_displacement(m, ramp)
    first_row_seam = cols * 2  # ring 2, column 0: used with u=0 and u=1
    expect = (sample_texture(ramp, torch.tensor([[0.0, 0.5]])) +
              sample_texture(ramp, torch.tensor([[1.0, 0.5]]))) / 2
    assert float(d[first_row_seam]) == pytest.approx(float(expect))
    interior = cols * 2 + 3
    assert float(d[interior]) == pytest.approx(
        float(sample_texture(ramp, uv[interior:interior + 1])))


def test_gradcheck_texture_and_positions() -> None:
    v, f, uv = grid(1, torch.float64)
    v = (v + 0.1 * torch.rand(v.shape, dtype=torch.float64)).requires_grad_()
    tex = torch.rand(3, 3, 1, dtype=torch.float64, requires_grad=True)

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return displace(Mesh(v_pos=x, t_pos_idx=f, v_tex=uv.double(), t_tex_idx=f), t).v_pos
    assert torch.autograd.gradcheck(fn, (v, tex))


def test_validation() -> None:
    v, f, uv = grid(1)
    m = Mesh(v_pos=v, t_pos_idx=f, v_tex=uv, t_tex_idx=f)
    with pytest.raises(ValueError, match="disp_tex"):
        displace(m, torch.zeros(4, 4))
    with pytest.raises(ValueError, match="no UVs"):
        displace(Mesh(v_pos=v, t_pos_idx=f), torch.zeros(4, 4, 1))
    with pytest.raises(ValueError, match="no normals"):
        displace(m, torch.zeros(4, 4, 1), use_mesh_normals=True)
