"""Fused antialias kernels (cpu: numba; cuda: numba-cuda) held to the plain-torch reference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from difflod.render.antialias import antialias
from difflod.render.rasterize import rasterize
from difflod.render.topology import Topology


def _sphere(rings: int, segs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed UV sphere: pos `[V,3]` float64 (poles shared), tris `[F,3]` int64."""
    th = torch.linspace(0, math.pi, rings + 1, dtype=torch.float64)[1:-1]
    ph = torch.arange(segs, dtype=torch.float64) * (2 * math.pi / segs)
    t, p = torch.meshgrid(th, ph, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    pos = torch.cat([torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), ring,
                     torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)])
    s = torch.arange(segs)
    tris = [torch.stack([torch.zeros_like(s), 1 + (s + 1) % segs, 1 + s], 1)]
    for r in range(rings - 2):
        a, b = 1 + r * segs + s, 1 + r * segs + (s + 1) % segs
        tris += [torch.stack([a, b, a + segs], 1), torch.stack([b, b + segs, a + segs], 1)]
    last = pos.shape[0] - 1
    top = 1 + (rings - 2) * segs
    tris.append(torch.stack([top + s, top + (s + 1) % segs, torch.full_like(s, last)], 1))
    return pos, torch.cat(tris)


def _scene(seed: int, b: int = 2, per_image: bool = True, dtype=torch.float32,
           rings: int = 6, segs: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """A jittered sphere plus an open sheet crossing it, seen by b random cameras.

    Returns clip `[B,V,4]` (or `[V,4]` when not per_image) and tris `[F,3]` int64: closed
    silhouettes, boundary edges, interior silhouettes over the sphere, and depth overlaps.
    """
    g = torch.Generator().manual_seed(seed)
    pos, tris = _sphere(rings, segs)
    pos = pos * (1 + 0.15 * torch.rand(pos.shape[0], 1, generator=g, dtype=torch.float64))
    sheet = torch.tensor([[-1.3, -0.4, 0.6], [1.2, -0.2, 0.9], [0.1, 1.3, 0.2],
                          [1.4, 1.1, -0.2]], dtype=torch.float64)
    sheet = sheet + 0.1 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    n = pos.shape[0]
    tris = torch.cat([tris, torch.tensor([[n, n + 1, n + 2], [n + 1, n + 3, n + 2]])])
    pos = torch.cat([pos, sheet])
    clips = []
    for _ in range(b if per_image else 1):
        a, e = torch.rand(2, generator=g, dtype=torch.float64) * torch.tensor([2 * math.pi, 1.0])
        ca, sa, ce, se = math.cos(a), math.sin(a), math.cos(e - 0.5), math.sin(e - 0.5)
        rot = torch.tensor([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]], dtype=torch.float64)
        rot = torch.tensor([[1, 0, 0], [0, ce, -se], [0, se, ce]], dtype=torch.float64) @ rot
        p = pos @ rot.T
        wv = 3.2 - p[:, 2]
        clips.append(torch.stack([1.6 * p[:, 0] + 0.1, 1.6 * p[:, 1] - 0.05,
                                  0.8 * wv - 1.2, wv], -1))
    clip = torch.stack(clips) if per_image else clips[0]
    return clip.to(dtype).contiguous(), tris


def _run(backend: str, color, rast, clip, tris, topo, grad):
    """(out, d color, d clip) of antialias on `backend` for upstream gradient `grad`."""
    c = color.detach().clone().requires_grad_(True)
    p = clip.detach().clone().requires_grad_(True)
    out = antialias(c, rast, p, tris, topology=topo, backend=backend)
    fused = {"cpu": "_AntialiasCpuBackward", "cuda": "_AntialiasCudaBackward"}
    if backend in fused:  # the fused kernels ran, not a fallback to the reference
        assert type(out.grad_fn).__name__ == fused[backend]
    out.backward(grad)
    return out.detach(), c.grad, p.grad


def _inputs(seed: int, b: int, per_image: bool, dtype, h: int = 40, w: int = 48, nc: int = 3):
    clip, tris = _scene(seed, b, per_image, dtype)
    rast, _ = rasterize(clip.detach(), tris, (h, w), backend="torch")
    if rast.shape[0] != b:
        rast = rast.expand(b, -1, -1, -1).contiguous()
    g = torch.Generator().manual_seed(100 + seed)
    color = torch.rand(b, h, w, nc, generator=g, dtype=dtype)
    grad = torch.randn(b, h, w, nc, generator=g, dtype=dtype)
    return color, rast, clip, tris, grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_cpu_matches_reference(seed: int, per_image: bool, dtype: torch.dtype) -> None:
    color, rast, clip, tris, grad = _inputs(seed, 3, per_image, dtype)
    topo = Topology.from_tris(tris)
    out_r, gc_r, gp_r = _run("torch", color, rast, clip, tris, topo, grad)
    out_c, gc_c, gp_c = _run("cpu", color, rast, clip, tris, topo, grad)
    changed = (out_r != color).any(-1)
    assert changed.sum() > 40  # the scene has silhouettes to blend
    # same pairs, edges and blend order: equal up to nothing (float32 included)
    assert torch.equal(out_c, out_r)
    assert gc_c.dtype == dtype and gp_c.dtype == dtype and gp_c.shape == clip.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(gc_c, gc_r, atol=tol, rtol=tol)
    scale = gp_r.abs().max()
    assert scale > 0
    torch.testing.assert_close(gp_c, gp_r, atol=tol * 10 * scale, rtol=tol * 10)


def test_cpu_shared_clip_with_batch_dimension_one() -> None:
    color, rast, clip, tris, grad = _inputs(3, 2, False, torch.float64)
    topo = Topology.from_tris(tris)
    clip1 = clip.unsqueeze(0)  # [1,V,4]: shared by both images
    out_r, gc_r, gp_r = _run("torch", color, rast, clip1, tris, topo, grad)
    out_c, gc_c, gp_c = _run("cpu", color, rast, clip1, tris, topo, grad)
    assert gp_c.shape == (1,) + clip.shape
    assert torch.equal(out_c, out_r)
    torch.testing.assert_close(gc_c, gc_r, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(gp_c, gp_r, atol=1e-10, rtol=1e-10)


def test_cpu_mixed_dtypes_follow_color() -> None:
    """float32 colour with a float64 raster and clip: computed in color's dtype, as the reference."""
    color, rast, clip, tris, grad = _inputs(4, 2, True, torch.float64)
    color, grad = color.float(), grad.float()
    topo = Topology.from_tris(tris)
    out_r, gc_r, gp_r = _run("torch", color, rast, clip, tris, topo, grad)
    out_c, gc_c, gp_c = _run("cpu", color, rast, clip, tris, topo, grad)
    assert out_c.dtype == torch.float32 and gp_c.dtype == torch.float64
    assert torch.equal(out_c, out_r)
    torch.testing.assert_close(gc_c, gc_r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gp_c, gp_r, atol=1e-4 * gp_r.abs().max(), rtol=1e-4)


def test_cpu_gradcheck_float64() -> None:
    clip, tris = _scene(5, 1, True, torch.float64, rings=4, segs=5)
    rast, _ = rasterize(clip, tris, (9, 11), backend="torch")
    g = torch.Generator().manual_seed(0)
    color = torch.rand(1, 9, 11, 2, generator=g, dtype=torch.float64, requires_grad=True)
    clip.requires_grad_(True)
    topo = Topology.from_tris(tris)
    out = antialias(color, rast, clip, tris, topology=topo, backend="cpu")
    assert not torch.equal(out, color)
    assert torch.autograd.gradcheck(
        lambda c, p: antialias(c, rast, p, tris, topology=topo, backend="cpu"), (color, clip))


def test_cpu_empty_raster_and_empty_mesh() -> None:
    color, rast, clip, tris, grad = _inputs(0, 2, True, torch.float32)
    empty = torch.zeros_like(rast)
    out, gc, gp = _run("cpu", color, empty, clip, tris, None, grad)
    assert torch.equal(out, color) and torch.equal(gc, grad)
    assert torch.equal(gp, torch.zeros_like(clip))
    no_tris = torch.zeros(0, 3, dtype=torch.int64)
    out, gc, gp = _run("cpu", color, empty, clip, no_tris, None, grad)
    assert torch.equal(out, color) and torch.equal(gc, grad)
    assert torch.equal(gp, torch.zeros_like(clip))
    # an image without pixels
    none = torch.zeros(2, 0, 5, 3)
    out = antialias(none, torch.zeros(2, 0, 5, 4), clip, tris, backend="cpu")
    assert out.shape == none.shape


def test_cpu_honours_needs_input_grad() -> None:
    color, rast, clip, tris, grad = _inputs(1, 1, True, torch.float64)
    c = color.clone().requires_grad_(True)
    out = antialias(c, rast, clip, tris, backend="cpu")  # clip without grad
    out.backward(grad)
    _, gc_r, _ = _run("torch", color, rast, clip, tris, None, grad)
    torch.testing.assert_close(c.grad, gc_r, atol=1e-12, rtol=1e-12)
    p = clip.clone().requires_grad_(True)
    out = antialias(color, rast, p, tris, backend="cpu")  # color without grad
    out.backward(grad)
    _, _, gp_r = _run("torch", color, rast, clip, tris, None, grad)
    torch.testing.assert_close(p.grad, gp_r, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_out_of_range_indices_raise(backend: str) -> None:
    color, rast, clip, tris, _ = _inputs(0, 1, True, torch.float32)
    bad_rast = rast.clone()
    bad_rast[0, 3, 4, 3] = tris.shape[0] + 1
    with pytest.raises(ValueError, match="rast holds triangle ids"):
        antialias(color, bad_rast, clip, tris, backend=backend)
    bad_rast[0, 3, 4, 3] = -1
    with pytest.raises(ValueError, match="rast holds triangle ids"):
        antialias(color, bad_rast, clip, tris, backend=backend)
    bad_tris = tris.clone()
    bad_tris[-1, 2] = clip.shape[-2]
    with pytest.raises(ValueError, match="tris holds vertex indices"):
        antialias(color, rast, clip, bad_tris, backend=backend)
    with pytest.raises(ValueError, match="tris holds vertex indices"):
        antialias(color, rast, clip, bad_tris, topology=Topology.from_tris(bad_tris),
                  backend=backend)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_validate_false_same_result_and_no_error_on_bad_ids() -> None:
    """validate=False only skips the read-back: valid inputs give the same image,
    out-of-range ids raise nothing (the kernels read nothing out of range)."""
    color, rast, clip, tris = (t.cuda() for t in _inputs(0, 1, True, torch.float32)[:4])
    checked = antialias(color, rast, clip, tris, backend="cuda")
    unchecked = antialias(color, rast, clip, tris, backend="cuda", validate=False)
    assert torch.equal(checked, unchecked)
    bad_rast = rast.clone()
    bad_rast[0, 3, 4, 3] = tris.shape[0] + 1
    with pytest.raises(ValueError, match="rast holds triangle ids"):
        antialias(color, bad_rast, clip, tris, backend="cuda")
    out = antialias(color, bad_rast, clip, tris, backend="cuda", validate=False)
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- cuda kernels

_SIM_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_antialias_fused import _inputs, _run
from difflod.render.antialias import _fused
from difflod.render.topology import Topology
bad = []
for seed, per_image, dtype in ((0, True, torch.float32), (1, False, torch.float64)):
    color, rast, clip, tris, grad = _inputs(seed, 2, per_image, dtype, h=12, w=14)
    topo = Topology.from_tris(tris)
    out_r, gc_r, gp_r = _run("torch", color, rast, clip, tris, topo, grad)
    if not (out_r != color).any():
        bad.append(("no blend", seed))
    c = color.clone().requires_grad_(True)
    p = clip.clone().requires_grad_(True)
    out = _fused("cuda", c, rast, p, topo, True)
    if type(out.grad_fn).__name__ != "_AntialiasCudaBackward":
        bad.append(("not the cuda Function", type(out.grad_fn).__name__))
    out.backward(grad)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    if not torch.allclose(out, out_r, atol=1e-6, rtol=0):
        bad.append(("out", seed, (out - out_r).abs().max().item()))
    if not torch.allclose(c.grad, gc_r, atol=tol, rtol=tol):
        bad.append(("grad color", seed))
    if not torch.allclose(p.grad, gp_r, atol=tol * 10 * gp_r.abs().max().item(), rtol=tol * 10):
        bad.append(("grad clip", seed, (p.grad - gp_r).abs().max().item()))
# out-of-range ids are reported, not read
rast[0, 2, 3, 3] = tris.shape[0] + 5
try:
    _fused("cuda", color, rast, clip, topo, True)
    bad.append(("ids", "no error"))
except ValueError as e:
    if "rast holds triangle ids" not in str(e):
        bad.append(("ids", str(e)))
print("BAD", bad)
"""


def test_cuda_kernels_match_reference_in_numba_simulator(run_simulated) -> None:
    """The numba-cuda kernels, run by numba's CUDA simulator on CPU tensors, match the reference."""
    stdout = run_simulated(_SIM_SCRIPT.format(tests=str(Path(__file__).parent)))
    assert "BAD []" in stdout, stdout[-3000:]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_reference_on_gpu(cuda: torch.device, dtype: torch.dtype) -> None:
    clip, tris = _scene(7, 4, True, dtype, rings=40, segs=60)
    clip, tris = clip.to(cuda), tris.to(cuda)
    rast, _ = rasterize(clip, tris, (256, 320))
    g = torch.Generator(device=cuda).manual_seed(0)
    color = torch.rand(4, 256, 320, 3, generator=g, device=cuda, dtype=dtype)
    grad = torch.randn(4, 256, 320, 3, generator=g, device=cuda, dtype=dtype)
    topo = Topology.from_tris(tris)
    out_r, gc_r, gp_r = _run("torch", color, rast, clip, tris, topo, grad)
    out_c, gc_c, gp_c = _run("cuda", color, rast, clip, tris, topo, grad)
    assert (out_r != color).any(-1).sum() > 500
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out_c, out_r, atol=1e-6 if dtype == torch.float32 else 1e-12,
                               rtol=0)
    torch.testing.assert_close(gc_c, gc_r, atol=tol, rtol=tol)
    torch.testing.assert_close(gp_c, gp_r, atol=tol * 10 * gp_r.abs().max(), rtol=tol * 10)
