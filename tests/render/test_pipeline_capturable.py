"""render_mesh(capturable=True), the render a CUDA-graph training step captures,
against the default render: every pixel shaded instead of the covered ones,
every layer peeled, tangents grouped by precomputed corner groups. Colors,
alpha and gradients to positions and every texture must be those of the
default render; and the capturable render must make no data-dependent op
(no nonzero, unique or read-back), which is what lets a GPU capture it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from difflod.assets import make
from difflod.render.pipeline import corner_groups, render_mesh
from difflod.render.topology import Topology
from difflod.scene.views import fixed_views

_DYNAMIC = ("nonzero", "unique", "_local_scalar_dense", "masked_select", "repeat_interleave.Tensor",
            # a tensor literal: on a GPU a copy from pageable host memory, refused while
            # a graph records (the H200 refused normals.py's torch.tensor([0, 0, 1]))
            "lift_fresh")


class _Ops(TorchDispatchMode):
    """Records the aten ops a call dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket.__name__) + "." + func._overloadname
        if name.startswith("lift_fresh") and _in_cpu_kernels():
            name = "cpu kernels' " + name  # the CPU backend's own arrays, never on a GPU
        self.names.append(name)
        return func(*args, **(kwargs or {}))


def _in_cpu_kernels() -> bool:
    """Whether the innermost difflod frame of the current stack is a CPU backend module."""
    import traceback

    frames = [f.filename for f in traceback.extract_stack() if "/difflod/" in f.filename]
    return bool(frames) and "/render/backends/cpu" in frames[-1]


def _case(name: str) -> dict:
    """A candidate as the trainer renders it: normals and tangents computed per render."""
    if name == "normal map":
        mesh = make("spiky", triangles=600, seed=1, texture_res=32)
        g = torch.Generator().manual_seed(3)
        nrm = torch.rand(32, 32, 3, generator=g) * 2 - 1
        nrm[..., 2] = nrm[..., 2].abs() + 0.5
        mat = dataclasses.replace(mesh.materials[0],
                                  normal=torch.nn.functional.normalize(nrm, dim=-1))
        mesh = mesh.replace(materials=[mat])
        layers = 1
    elif name == "blend, 3 layers":
        mesh = make("sphere", triangles=400, seed=2, texture_res=16)
        kd = mesh.materials[0].kd[..., :3]
        alpha = torch.linspace(0.2, 0.8, kd.shape[1]).expand(kd.shape[0], -1)[..., None]
        mat = dataclasses.replace(mesh.materials[0], kd=torch.cat([kd, alpha], -1),
                                  alpha_mode="BLEND")
        mesh = mesh.replace(materials=[mat])
        layers = 3
    else:  # several materials, one of them emissive
        mesh = make(name, triangles=500, seed=4, texture_res=16)
        layers = 1
    mesh = mesh.replace(v_nrm=None, t_nrm_idx=None, v_tng=None, t_tng_idx=None)
    return {"mesh": mesh, "layers": layers}


def _render(case: dict, capturable: bool, ops: _Ops | None = None, antialias: bool = True):
    mesh = case["mesh"]
    v_pos = mesh.v_pos.clone().requires_grad_(True)
    mats, leaves = [], [v_pos]
    for m in mesh.materials:
        fields = {k: getattr(m, k).clone().requires_grad_(True)
                  for k in ("kd", "ks", "normal", "emissive") if getattr(m, k) is not None}
        leaves += list(fields.values())
        mats.append(dataclasses.replace(m, **fields))
    cand = mesh.replace(v_pos=v_pos, materials=mats)
    views = fixed_views(3, seed=5)
    corners = corner_groups(cand) if capturable else None
    topology = Topology.from_tris(cand.t_pos_idx)  # built once by the trainer
    if ops is not None:
        with ops:
            out = render_mesh(cand, views, (40, 40), layers=case["layers"], validate=False,
                              capturable=capturable, corners=corners, topology=topology,
                              antialias=antialias)
    else:
        out = render_mesh(cand, views, (40, 40), layers=case["layers"], validate=False,
                          capturable=capturable, corners=corners, topology=topology,
                              antialias=antialias)
    weights = torch.linspace(0.2, 1.8, out.color.numel()).reshape(out.color.shape)
    ((out.color * weights).sum() + out.alpha.sum()).backward()
    return out.color.detach(), out.alpha.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("name", ["normal map", "blend, 3 layers", "multi_material", "beacon"])
def test_capturable_render_equals_the_default_render(name: str) -> None:
    case = _case(name)
    want_c, want_a, want_g = _render(case, False)
    got_c, got_a, got_g = _render(case, True)
    assert float(want_c.abs().sum()) > 0 and 0 < float(want_a.mean()) < 1
    torch.testing.assert_close(got_c, want_c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_a, want_a, rtol=1e-5, atol=1e-6)
    for i, (a, b) in enumerate(zip(got_g, want_g, strict=True)):
        assert b is not None and float(b.abs().sum()) > 0, i
        assert torch.isfinite(a).all(), i
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=f"leaf {i}")


@pytest.mark.parametrize("name", ["normal map", "blend, 3 layers"])
def test_capturable_render_makes_no_data_dependent_op(name: str) -> None:
    case = _case(name)
    default, capt = _Ops(), _Ops()
    # without antialias: its cpu path checks index values on the host (its cuda
    # path, the one captured, is told not to by validate=False)
    _render(case, False, default, antialias=False)
    _render(case, True, capt, antialias=False)
    # the default render does compact (so the check can see such ops at all)
    assert any(n.startswith("nonzero") for n in default.names), sorted(set(default.names))
    bad = sorted({n for n in capt.names if n.startswith(_DYNAMIC)})
    assert not bad, bad
