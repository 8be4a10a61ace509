"""render_mesh(capturable=True), the render a CUDA-graph training step captures,
against the default render: every pixel shaded instead of the covered ones,
every layer peeled, tangents grouped by precomputed corner groups. Colors,
alpha and gradients to positions and every texture must be those of the
default render; and the capturable render must make no data-dependent op
(no nonzero, unique or read-back), which is what lets a GPU capture it."""

from __future__ import annotations

import contextlib
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


def _render(case: dict, capturable: bool, ops: _Ops | None = None, antialias: bool = True,
            capacity: int | None = None, counts: list | None = None):
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
    with ops if ops is not None else contextlib.nullcontext():
        out = render_mesh(cand, views, (40, 40), layers=case["layers"], validate=False,
                          capturable=capturable, corners=corners, topology=topology,
                          antialias=antialias, pixel_capacity=capacity)
    if counts is not None:
        counts.append(out.covered)
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


def _layer_counts(case: dict) -> list[int]:
    """Covered pixels of each depth-peeled layer of the case's render."""
    from difflod.render.peel import DepthPeeler
    from difflod.render.pipeline import clip_positions

    mesh = case["mesh"]
    clip = clip_positions(mesh.v_pos, fixed_views(3, seed=5).mvp)
    with DepthPeeler(clip, mesh.t_pos_idx, (40, 40), backend="cpu") as peeler:
        return [int((peeler.rasterize_next_layer()[0][..., 3] > 0).sum())
                for _ in range(case["layers"])]


@pytest.mark.parametrize("name", ["normal map", "blend, 3 layers", "multi_material", "beacon"])
@pytest.mark.parametrize("spare", [0, 57])
def test_pixel_capacity_render_equals_the_default_render(name: str, spare: int) -> None:
    """Gathered into a fixed number of slots (exactly the covered pixels of the
    fullest layer, or more), the capturable render is the default render, and
    it counts the fullest layer's pixels."""
    case = _case(name)
    most = max(_layer_counts(case))
    assert 0 < most < 3 * 40 * 40
    want_c, want_a, want_g = _render(case, False)
    counts: list = []
    got_c, got_a, got_g = _render(case, True, capacity=most + spare, counts=counts)
    assert counts[0].dtype == torch.int64 and int(counts[0]) == most
    torch.testing.assert_close(got_c, want_c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_a, want_a, rtol=1e-5, atol=1e-6)
    for i, (a, b) in enumerate(zip(got_g, want_g, strict=True)):
        assert b is not None and float(b.abs().sum()) > 0, i
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=f"leaf {i}")


def test_pixels_past_the_capacity_stay_empty_and_are_counted() -> None:
    """Too small a capacity: the first covered pixels (in raster order) are
    shaded as the default render shades them, the rest stay background, and
    the count says how many there were."""
    case = _case("normal map")
    most = _layer_counts(case)[0]
    keep = most // 3
    want_c, want_a, _ = _render(case, False, antialias=False)
    counts: list = []
    got_c, got_a, got_g = _render(case, True, antialias=False, capacity=keep, counts=counts)
    assert int(counts[0]) == most
    covered = want_a.reshape(-1) > 0
    rank = torch.cumsum(covered.long(), 0) - 1
    shaded = covered & (rank < keep)
    assert int(shaded.sum()) == keep
    torch.testing.assert_close(got_c.reshape(-1, 3)[shaded], want_c.reshape(-1, 3)[shaded],
                               rtol=1e-5, atol=1e-6)
    assert float(got_a.reshape(-1)[~shaded].abs().max()) == 0.0
    assert float(got_c.reshape(-1, 3)[~shaded].abs().max()) == 0.0
    assert all(torch.isfinite(g).all() for g in got_g if g is not None)


def test_pixel_capacity_needs_a_capturable_render() -> None:
    case = _case("normal map")
    with pytest.raises(ValueError, match="pixel_capacity must be an int >= 1 with capturable"):
        _render(case, False, capacity=100)
    with pytest.raises(ValueError, match="pixel_capacity"):
        _render(case, True, capacity=0)


@pytest.mark.parametrize("name", ["normal map", "blend, 3 layers"])
@pytest.mark.parametrize("capacity", [None, 2000])
def test_capturable_render_makes_no_data_dependent_op(name: str, capacity: int | None) -> None:
    case = _case(name)
    default, capt = _Ops(), _Ops()
    # without antialias: its cpu path checks index values on the host (its cuda
    # path, the one captured, is told not to by validate=False)
    _render(case, False, default, antialias=False)
    _render(case, True, capt, antialias=False, capacity=capacity)
    # the default render does compact (so the check can see such ops at all)
    assert any(n.startswith("nonzero") for n in default.names), sorted(set(default.names))
    bad = sorted({n for n in capt.names if n.startswith(_DYNAMIC)})
    assert not bad, bad


@pytest.mark.parametrize("c", [0, 1, 3, 4])
def test_flat_gather_and_scatter_are_index_select_and_index_copy(c: int) -> None:
    """The GPU's row gather and scatter (render.rows.flat_rows,
    flat_put_rows), held on the CPU to the ops they stand for: values and
    gradients."""
    from difflod.render.rows import flat_put_rows, flat_rows

    g = torch.Generator().manual_seed(c)
    shape = (50,) if c == 0 else (50, c)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    index = torch.tensor([3, 7, 7, 0, 49, 12])   # a repeat: gradients add up
    grad = torch.randn(6, *shape[1:], generator=g)
    want = x.index_select(0, index)
    got = flat_rows(x, index)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    (want_g,) = torch.autograd.grad(want, x, grad)
    (got_g,) = torch.autograd.grad(got, x, grad)
    torch.testing.assert_close(got_g, want_g)
    if c == 0:
        return
    unique = torch.tensor([3, 7, 0, 49, 12])
    rows = torch.randn(5, c, generator=g, requires_grad=True)
    base = torch.randn(50, c, generator=g)
    want = base.index_copy(0, unique, rows)
    got = flat_put_rows(base, unique, rows)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    up = torch.randn(50, c, generator=g)
    (want_g,) = torch.autograd.grad(want, rows, up)
    (got_g,) = torch.autograd.grad(got, rows, up)
    torch.testing.assert_close(got_g, want_g, rtol=0, atol=0)
