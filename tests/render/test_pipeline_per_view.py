"""render_mesh(per_view=True): one render of a mesh posed per view equals
rendering each posed copy in its own view, images and gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from difflod.assets import make
from difflod.geometry.skinning import pose_views
from difflod.geometry.transform import unit_size
from difflod.mesh import Mesh
from difflod.render.pipeline import render_mesh
from difflod.scene.views import fixed_views

RES = 24


def _posed(times: torch.Tensor, normal_map: bool) -> tuple[Mesh, Mesh, torch.Tensor]:
    """(the animated asset, its copies posed at `times` with trainable
    positions and kd, that kd)."""
    mesh = unit_size(make("skinned_cylinder", triangles=300, texture_res=8))
    mat = mesh.materials[0]
    kd = mat.kd.clone().requires_grad_(True)
    normal = None
    if normal_map:  # tangents then come from the copies' own positions
        g = torch.Generator().manual_seed(2)
        normal = torch.nn.functional.normalize(
            torch.rand(8, 8, 3, generator=g) * torch.tensor([0.6, 0.6, 0.4])
            + torch.tensor([-0.3, -0.3, 0.6]), dim=-1)
    mesh = mesh.replace(materials=(dataclasses.replace(mat, kd=kd, normal=normal),))
    copies = pose_views(mesh, times)
    return mesh, copies.replace(v_pos=copies.v_pos.detach().requires_grad_(True)), kd


@pytest.mark.parametrize(("backend", "layers", "capturable", "normal_map"), [
    ("torch", 1, False, True), ("cpu", 1, False, False), ("cpu", 2, False, True),
    ("cpu", 1, True, True)])
def test_per_view_render_is_each_copy_in_its_view(backend: str, layers: int, capturable: bool,
                                                  normal_map: bool) -> None:
    times = torch.tensor([0.1, 0.7, 1.4])
    views = fixed_views(3, seed=4)
    _, copies, kd = _posed(times, normal_map)
    bg = torch.rand(3, RES, RES, 3, generator=torch.Generator().manual_seed(5))
    opts = {"backend": backend, "layers": layers, "capturable": capturable, "spp": 2}
    together = render_mesh(copies, views, (RES, RES), background=bg, per_view=True, **opts)
    weight = torch.rand(3, RES, RES, 3, generator=torch.Generator().manual_seed(6))
    (together.color * weight).sum().backward()
    g_pos, g_kd = copies.v_pos.grad.clone(), kd.grad.clone()
    assert float(g_pos.abs().sum()) > 0  # silhouettes and shading move the vertices

    copies.v_pos.grad, kd.grad = None, None
    nv, nf = copies.num_vertices // 3, copies.num_triangles // 3
    for b in range(3):
        one = copies.replace(v_pos=copies.v_pos[b * nv:(b + 1) * nv],
                             t_pos_idx=copies.t_pos_idx[:nf],
                             t_tex_idx=copies.t_tex_idx[:nf])
        alone = render_mesh(one, views[b:b + 1], (RES, RES), background=bg[b:b + 1], **opts)
        torch.testing.assert_close(together.color[b:b + 1], alone.color, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together.alpha[b:b + 1], alone.alpha, atol=1e-5, rtol=1e-5)
        (alone.color * weight[b:b + 1]).sum().backward()
    torch.testing.assert_close(g_pos, copies.v_pos.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g_kd, kd.grad, atol=1e-4, rtol=1e-4)


def test_per_view_needs_one_copy_per_view() -> None:
    _, copies, _ = _posed(torch.tensor([0.0, 1.0]), False)
    with pytest.raises(ValueError, match="per_view: the mesh's .* are not 3 copies"):
        render_mesh(copies, fixed_views(3), (RES, RES), per_view=True)
