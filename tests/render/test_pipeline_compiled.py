"""render_mesh(compiled=True) against the eager render: a training step's
candidate (normals and tangents computed per render, a normal map), colors and
gradients to positions and every texture.

The compiled pieces go through torch.compile on the "aot_eager" backend (the
same graph capture, graph breaks and autograd split as Inductor, no code
generation): what the CPU can check of the GPU path; the GPU itself runs them
in tests/shading/test_shade_compiled.py's GPU test and the cuda pipeline tests."""

from __future__ import annotations

import dataclasses

import torch

from difflod.assets import make
from difflod.render import shade_op
from difflod.render.pipeline import render_mesh
from difflod.scene.views import fixed_views


def _candidate() -> dict[str, torch.Tensor]:
    mesh = make("spiky", triangles=600, seed=1, texture_res=32)
    g = torch.Generator().manual_seed(3)
    nrm = torch.rand(32, 32, 3, generator=g) * 2 - 1
    nrm[..., 2] = nrm[..., 2].abs() + 0.5
    return {"v_pos": mesh.v_pos.clone(), "kd": mesh.materials[0].kd[..., :3].clone(),
            "ks": mesh.materials[0].ks.clone(),
            "normal": torch.nn.functional.normalize(nrm, dim=-1), "mesh": mesh}


def _render(parts: dict, compiled: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [parts[k].clone().requires_grad_(True) for k in ("v_pos", "kd", "ks", "normal")]
    v_pos, kd, ks, normal = leaves
    mesh = parts["mesh"]
    mat = dataclasses.replace(mesh.materials[0], kd=kd, ks=ks, normal=normal)
    cand = mesh.replace(v_pos=v_pos, v_nrm=None, t_nrm_idx=None, v_tng=None, t_tng_idx=None,
                        materials=[mat])
    views = fixed_views(3, seed=5)
    color = render_mesh(cand, views, (48, 48), compiled=compiled).color
    weights = torch.linspace(0.2, 1.8, color.numel()).reshape(color.shape)
    (color * weights).sum().backward()
    return color.detach(), [t.grad for t in leaves]


def test_compiled_render_matches_eager_colors_and_gradients(aot_eager: None,
                                                            monkeypatch) -> None:
    import torch._dynamo

    # the eager side shades with the plain-torch shader, the code the compiled
    # side compiles (on the CPU the renderer would use the fused kernel, held to
    # that shader in tests/render/test_shade_fused.py, which rounds differently)
    monkeypatch.setattr(shade_op, "_fusable", lambda *args: None)

    parts = _candidate()
    want, want_g = _render(parts, False)
    stats = torch._dynamo.utils.counters["stats"]
    stats.clear()
    got, got_g = _render(parts, True)
    # captured: face and vertex normals, tangents (two graphs around torch.unique),
    # the shading
    assert stats["unique_graphs"] >= 4, dict(stats)
    assert float(want.abs().sum()) > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for name, a, b in zip(("v_pos", "kd", "ks", "normal"), got_g, want_g):
        assert b is not None and float(b.abs().sum()) > 0, name
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
