"""render_mesh's fast paths: covered-pixel compaction and the numba texture backend.

The compacted layer shading is checked against shading the whole image with
the public ops (what _render_layer did before compaction), and the "cpu"
backend against the "torch" reference, outputs and gradients.
"""

from __future__ import annotations

import dataclasses

import torch

from difflod.geometry.normals import face_normals, vertex_normals
from difflod.mesh import Material, Mesh
from difflod.render.interpolate import interpolate
from difflod.render.pipeline import clip_positions, render_mesh
from difflod.render.rasterize import rasterize
from difflod.render.shade_op import shade
from difflod.render.texture import texture
from difflod.scene.views import views_from_eye

RES = 32


def _mesh() -> Mesh:
    """A bumpy, textured 6x6 grid patch that covers part of the image."""
    g = torch.Generator().manual_seed(0)
    n = 6
    ys, xs = torch.meshgrid(torch.linspace(-0.8, 0.8, n), torch.linspace(-0.8, 0.8, n),
                            indexing="ij")
    z = 0.2 * torch.rand(n, n, generator=g)
    v_pos = torch.stack([xs, ys, z], -1).reshape(-1, 3)
    v_tex = torch.stack([(xs + 0.8) / 1.6, (ys + 0.8) / 1.6], -1).reshape(-1, 2)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1), \
        idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    tris = torch.cat([torch.stack([a, b, d], 1), torch.stack([a, d, c], 1)])
    kd = torch.rand(16, 16, 3, generator=g)
    ks = torch.rand(16, 16, 3, generator=g) * torch.tensor([0.2, 0.8, 0.5]) + \
        torch.tensor([0.0, 0.2, 0.0])
    return Mesh(v_pos=v_pos, t_pos_idx=tris, v_tex=v_tex, t_tex_idx=tris.clone(),
                materials=(Material(kd=kd, ks=ks),))


def _views():
    """Two different views (B = 2), so per-pixel eye/light gathering is exercised."""
    a = views_from_eye([0.3, -0.2, 3.0], light_power=4.0)
    b = views_from_eye([-0.5, 0.4, 2.5], light_power=4.0)
    return dataclasses.replace(a, mvp=torch.cat([a.mvp, b.mvp]),
                               campos=torch.cat([a.campos, b.campos]),
                               lightpos=torch.cat([a.lightpos, b.lightpos + 0.3]))


def _full_image_layer(mesh: Mesh, views, backend: str) -> torch.Tensor:
    """Shade every pixel of the first layer (no compaction), zero where empty."""
    clip = clip_positions(mesh.v_pos, views.mvp)
    rast, db = rasterize(clip, mesh.t_pos_idx, (RES, RES), grad_db=True, backend=backend)
    tri = rast[..., 3].long() - 1
    gb_pos, _ = interpolate(mesh.v_pos, rast, mesh.t_pos_idx)
    gb_geom = face_normals(mesh.v_pos, mesh.t_pos_idx)[tri.clamp(min=0)]
    gb_nrm, _ = interpolate(vertex_normals(mesh.v_pos, mesh.t_pos_idx), rast, mesh.t_pos_idx)
    uv, uv_da = interpolate(mesh.v_tex, rast, mesh.t_tex_idx, rast_db=db, diff_attrs="all")
    mat = mesh.materials[0]
    kd = texture(mat.kd, uv, uv_da, filter_mode="linear-mipmap-linear", backend=backend)
    ks = texture(mat.ks, uv, uv_da, filter_mode="linear-mipmap-linear", backend=backend)
    col = shade(gb_pos, gb_geom, gb_nrm, None, kd, ks, None, views.campos, views.lightpos,
                views.light_power, 0.08, backend=backend)
    return torch.where((tri >= 0).unsqueeze(-1), col, torch.zeros(()))


def _grads(mesh: Mesh, fn):
    pos = mesh.v_pos.clone().requires_grad_(True)
    kd = mesh.materials[0].kd.clone().requires_grad_(True)
    m = Mesh(v_pos=pos, t_pos_idx=mesh.t_pos_idx, v_tex=mesh.v_tex, t_tex_idx=mesh.t_tex_idx,
             materials=(Material(kd=kd, ks=mesh.materials[0].ks),))
    out = fn(m)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * w).sum().backward()
    return out.detach(), pos.grad, kd.grad


def test_compacted_layer_matches_full_image_shading():
    mesh, views = _mesh(), _views()
    for backend in ("torch", "cpu"):
        full = _grads(mesh, lambda m, be=backend: _full_image_layer(m, views, be))
        fast = _grads(mesh, lambda m, be=backend: render_mesh(m, views, (RES, RES), backend=be,
                                                              antialias=False).color)
        covered = full[0].abs().sum(-1) > 0
        assert 0.2 < covered.float().mean() < 0.9  # the test scene has background pixels
        for a, b in zip(full, fast):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()


def test_cpu_backend_matches_torch_reference_render():
    mesh, views = _mesh(), _views()
    ref = _grads(mesh, lambda m: render_mesh(m, views, (RES, RES), backend="torch").color)
    fast = _grads(mesh, lambda m: render_mesh(m, views, (RES, RES), backend="cpu").color)
    for a, b in zip(ref, fast):
        # gradients are sums over many pixels: the fused shader (float64 inside)
        # and the torch one (float32) differ by rounding, relative to the
        # largest value where terms cancel
        scale = float(a.abs().max())
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(scale, 1.0)), (a - b).abs().max()


def test_empty_layer_renders_background():
    mesh = _mesh()
    far = views_from_eye([0.0, 0.0, -3.0], at=(0.0, 0.0, -6.0))
    out = render_mesh(mesh, far, (RES, RES), backend="cpu")
    assert torch.equal(out.color, torch.zeros_like(out.color))


def test_trained_maps_sampled_in_one_call_as_in_three(monkeypatch):
    """On the CPU a material's trained maps of one size go through one texture
    call (materials._lookups): colours and texel gradients as with a call per
    map; the gradient to the positions (summed over the maps' channels in
    float64 inside the kernel instead of per map in float32) to rounding."""
    import dataclasses as dc

    from difflod.render import materials

    mesh, views = _mesh(), _views()
    g = torch.Generator().manual_seed(4)
    normal = torch.nn.functional.normalize(torch.rand(16, 16, 3, generator=g) - 0.5, dim=-1)

    def run():
        pos = mesh.v_pos.clone().requires_grad_(True)
        maps = [t.clone().requires_grad_(True) for t in
                (mesh.materials[0].kd, mesh.materials[0].ks, normal)]
        mat = dc.replace(mesh.materials[0], kd=maps[0], ks=maps[1], normal=maps[2])
        out = render_mesh(Mesh(v_pos=pos, t_pos_idx=mesh.t_pos_idx, v_tex=mesh.v_tex,
                               t_tex_idx=mesh.t_tex_idx, materials=(mat,)),
                          views, (RES, RES), backend="cpu").color
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * w).sum().backward()
        return out.detach(), pos.grad, [t.grad for t in maps]

    calls = []
    real = materials.texture
    monkeypatch.setattr(materials, "texture", lambda tex, *a, **k: calls.append(tex.shape[-1])
                        or real(tex, *a, **k))
    one = run()
    assert calls == [9], calls  # kd, ks and normal in one call
    monkeypatch.setattr(materials, "_lookups", lambda textures, uv, uv_da, mips, index, backend:
                        {k: real(t, uv, uv_da, filter_mode="linear-mipmap-linear",
                                 backend=backend) for k, t in textures.items()})
    three = run()
    assert torch.equal(one[0], three[0])
    for a, b in zip(one[2], three[2]):
        assert torch.equal(a, b)
    torch.testing.assert_close(one[1], three[1], rtol=1e-4, atol=1e-5 * float(three[1].abs().max()))
