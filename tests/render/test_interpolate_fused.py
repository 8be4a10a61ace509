"""interpolate's fused kernels ("cpu": numba; "cuda": numba-cuda) held to the torch reference.

Scenes come from the real rasterizer; outputs must match the reference
(bit for bit on the CPU), gradients of attr, rast and rast_db under random
upstream gradients to rounding, and float64 gradcheck must pass on the
fused path itself.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from difflod.render.interpolate import interpolate
from difflod.render.rasterize import rasterize

B, H, W, V, F, C = 3, 14, 17, 40, 30, 4


def _scene(seed: int, b: int = B, h: int = H, w: int = W, v: int = V, f: int = F,
           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """(clip [b,v,4], tris [f,3] int32, rast, rast_db) of random overlapping triangles."""
    g = torch.Generator().manual_seed(seed)
    clip = torch.rand(b, v, 4, generator=g, dtype=torch.float64) * 2.4 - 1.2
    clip[..., 2] *= 0.5
    clip[..., 3] = 1.0 + 0.3 * clip[..., 3]
    xy = clip[..., :2] * clip[..., 3:]
    clip = torch.cat([xy, clip[..., 2:3] * clip[..., 3:], clip[..., 3:]], -1).to(dtype)
    tris = torch.randint(0, v, (f, 3), generator=g, dtype=torch.int32)
    rast, db = rasterize(clip, tris, (h, w), grad_db=True, backend="cpu")
    return clip, tris, rast, db


def _run(backend: str | Callable, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
         db: torch.Tensor | None, diff_attrs, seed: int = 7):
    """Outputs and the gradients of (attr, rast, db) under random upstream gradients.

    backend: a backend name for interpolate, or a function (attr, rast, tris,
    rast_db, diff_attrs) -> (out, out_da) standing in for it.
    """
    a = attr.detach().clone().requires_grad_(True)
    r = rast.detach().clone().requires_grad_(True)
    d = None if db is None else db.detach().clone().requires_grad_(True)
    if callable(backend):
        out, out_da = backend(a, r, tris, d, diff_attrs)
    else:
        out, out_da = interpolate(a, r, tris, rast_db=d, diff_attrs=diff_attrs, backend=backend)
    fused = backend in ("cpu", "cuda") or getattr(backend, "__name__", "") == "fused"
    assert _ran_fused(out) == fused  # a silent fallback to the reference cannot pass
    g = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)).sum()
    if out_da is not None:
        noise = torch.randn(out_da.shape, generator=g, dtype=out.dtype).to(out.device)
        loss = loss + (out_da * noise).sum()
    loss.backward()
    grads = (a.grad, r.grad, None if d is None else d.grad)
    return out, out_da, grads


def _ran_fused(out: torch.Tensor) -> bool:
    """Whether out came from the fused autograd Function (a few graph steps up)."""
    fns = [out.grad_fn]
    for _ in range(4):
        if any(type(f).__name__ == "_FusedFnBackward" for f in fns):
            return True
        fns = [n for f in fns if f is not None for n, _ in f.next_functions]
    return False


def _attr(kind: str, seed: int, dtype: torch.dtype, b: int = B, v: int = V) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + seed)
    shape = {"shared": (v, C), "one": (1, v, C), "per_image": (b, v, C)}[kind]
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _assert_matches(ref, got, dtype: torch.dtype, exact: bool = True) -> None:
    """Outputs equal (exact: bit for bit; else to rounding), gradients equal to rounding."""
    (o_r, da_r, g_r), (o_g, da_g, g_g) = ref, got
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    out_tol = {"atol": 0.0, "rtol": 0.0} if exact else tol  # same operations in the same order
    if not exact:  # GPU: FMA contraction, atomics' summation order over thousands of pixels
        tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-10}
    assert o_g.dtype == o_r.dtype and o_g.device == o_r.device
    torch.testing.assert_close(o_g, o_r, **out_tol)
    if da_r is None:
        assert da_g is None
    else:
        torch.testing.assert_close(da_g, da_r, **out_tol)
    for gr, gg in zip(g_r, g_g):
        if gr is None:
            assert gg is None
        else:
            torch.testing.assert_close(gg, gr, **tol)


@pytest.mark.parametrize("kind", ["shared", "one", "per_image"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("diff_attrs", [None, "all", [2, 0, 2]])
def test_cpu_matches_reference(kind: str, dtype: torch.dtype, diff_attrs) -> None:
    _, tris, rast, db = _scene(0, dtype=dtype)
    covered = rast[..., 3] > 0
    assert 0.3 < covered.float().mean() < 1.0  # covered and empty pixels both present
    attr = _attr(kind, 0, dtype)
    db_arg = None if diff_attrs is None else db
    ref = _run("torch", attr, rast, tris, db_arg, diff_attrs)
    got = _run("cpu", attr, rast, tris, db_arg, diff_attrs)
    _assert_matches(ref, got, dtype)
    g_attr, g_rast, _ = got[2]
    assert g_attr.abs().sum() > 0 and g_rast[..., :2].abs().sum() > 0
    assert not g_rast[..., 2:].any()  # z/w and ids get no gradient
    assert not got[0][~covered].any()


def test_cpu_gradients_reach_clip_positions_like_reference() -> None:
    """End to end through the rasterizer: clip-space gradients agree on both paths."""
    clip, tris, _, _ = _scene(1, dtype=torch.float64)
    attr = _attr("shared", 1, torch.float64)
    grads = []
    for backend in ("torch", "cpu"):
        c = clip.clone().requires_grad_(True)
        a = attr.clone().requires_grad_(True)
        rast, db = rasterize(c, tris, (H, W), grad_db=True, backend="cpu")
        out, out_da = interpolate(a, rast, tris, rast_db=db, diff_attrs="all", backend=backend)
        (out.square().sum() + out_da.sin().sum()).backward()
        grads.append((c.grad, a.grad))
    assert grads[0][0].abs().sum() > 0
    for gr, gg in zip(*grads):
        torch.testing.assert_close(gg, gr, atol=1e-12, rtol=1e-10)


def test_cpu_gradcheck() -> None:
    _, tris, rast, db = _scene(2, b=2, h=6, w=7, v=8, f=6, dtype=torch.float64)
    assert (rast[..., 3] > 0).sum() >= 10
    rest = rast[..., 2:]
    uv = rast[..., :2].clone().requires_grad_(True)
    d = db.clone().requires_grad_(True)
    for kind in ("shared", "per_image"):
        attr = _attr(kind, 2, torch.float64, b=2, v=8).requires_grad_(True)

        def f(a, b, dd):
            return interpolate(a, torch.cat([b, rest], -1), tris, rast_db=dd,
                               diff_attrs=[1, 3, 1], backend="cpu")

        assert torch.autograd.gradcheck(f, (attr, uv, d))


def test_cpu_one_output_or_one_input_at_a_time() -> None:
    """Only out or only out_da in the loss; only some inputs requiring grad."""
    _, tris, rast, db = _scene(3, dtype=torch.float64)
    attr = _attr("shared", 3, torch.float64)
    results = []
    for backend in ("torch", "cpu"):
        a = attr.clone().requires_grad_(True)
        d = db.clone().requires_grad_(True)
        out, out_da = interpolate(a, rast, tris, rast_db=d, diff_attrs=[0], backend=backend)
        g_a_da, g_d = torch.autograd.grad(out_da.sum(), (a, d), retain_graph=True)  # out unused
        (g_a_out,) = torch.autograd.grad(out.sum(), (a,))  # out_da unused, rast_db not asked
        results.append((g_a_da, g_d, g_a_out))
    for gr, gg in zip(*results):
        assert gr.abs().sum() > 0
        torch.testing.assert_close(gg, gr, atol=1e-12, rtol=1e-12)


def test_cpu_mixed_dtypes_noncontiguous_attr_int64_tris() -> None:
    """float32 raster with float64 attributes, a transposed attr view, int64 tris."""
    _, tris, rast, db = _scene(4)
    attr = _attr("shared", 4, torch.float64).t().contiguous().t()  # column-major view
    assert not attr.is_contiguous()
    ref = _run("torch", attr, rast, tris.long(), db, "all")
    got = _run("cpu", attr, rast, tris.long(), db, "all")
    assert got[0].dtype == torch.float64 and got[2][1].dtype == torch.float32
    _assert_matches(ref, got, torch.float64)


def test_cpu_compacted_raster_like_the_pipeline() -> None:
    """The pipeline's [P,1,1,4] raster of covered pixels gives the full raster's values."""
    _, tris, rast, db = _scene(5)
    attr = _attr("shared", 5, torch.float32)
    pix = (rast[..., 3].reshape(-1) > 0).nonzero().squeeze(1)
    rc = rast.reshape(-1, 4)[pix].reshape(-1, 1, 1, 4)
    dc = db.reshape(-1, 4)[pix].reshape(-1, 1, 1, 4)
    full, full_da = interpolate(attr, rast, tris, rast_db=db, diff_attrs="all", backend="cpu")
    out, out_da = interpolate(attr, rc, tris, rast_db=dc, diff_attrs="all", backend="cpu")
    assert torch.equal(out.reshape(-1, C), full.reshape(-1, C)[pix])
    assert torch.equal(out_da.reshape(-1, 2 * C), full_da.reshape(-1, 2 * C)[pix])
    _assert_matches(_run("torch", attr, rc, tris, dc, "all"), _run("cpu", attr, rc, tris, dc, "all"),
                    torch.float32)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_empty_raster_and_empty_mesh(backend: str) -> None:
    _, tris, rast, db = _scene(6)
    attr = _attr("shared", 6, torch.float32)
    # no covered pixel: zeros, zero gradients
    empty = torch.zeros_like(rast)
    out, out_da, (g_a, g_r, g_d) = _run(backend, attr, empty, tris, db, "all")
    assert not out.any() and not out_da.any()
    assert not g_a.any() and not g_r.any() and not g_d.any()
    # no pixels at all
    out, out_da, (g_a, g_r, g_d) = _run(backend, attr, rast[:0], tris, db[:0], [1])
    assert out.shape == (0, H, W, C) and out_da.shape == (0, H, W, 2)
    assert g_a.shape == attr.shape and not g_a.any() and g_r.shape == (0, H, W, 4)
    # no triangles (with and without vertices): every pixel is empty
    for n_v in (V, 0):
        a = attr[:n_v]
        out, out_da, (g_a, g_r, g_d) = _run(backend, a, empty, tris[:0], db, "all")
        assert out.shape == (B, H, W, C) and not out.any() and not out_da.any()
        assert g_a.shape == (n_v, C) and not g_a.any() and not g_r.any()


def test_empty_diff_attrs_list() -> None:
    _, tris, rast, db = _scene(7)
    attr = _attr("per_image", 7, torch.float32)
    ref = _run("torch", attr, rast, tris, db, [])
    got = _run("cpu", attr, rast, tris, db, [])
    assert got[1].shape == (B, H, W, 0)
    _assert_matches(ref, got, torch.float32)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_out_of_range_indices_raise(backend: str) -> None:
    _, tris, rast, _ = _scene(8)
    attr = _attr("shared", 8, torch.float32)
    bad = tris.clone()
    bad[-1, 2] = V  # one triangle, maybe never drawn, indexes past the vertices
    with pytest.raises(ValueError, match="tris holds vertex indices outside"):
        interpolate(attr, rast, bad, backend=backend)
    bad[-1, 2] = -1
    with pytest.raises(ValueError, match="tris holds vertex indices outside"):
        interpolate(attr, rast, bad, backend=backend)
    with pytest.raises(ValueError, match="rast holds triangle ids"):
        interpolate(attr, rast, tris[: F // 2], backend=backend)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_validate_false_skips_the_check_and_reads_nothing_out_of_range(device: str) -> None:
    """validate=False: no error, and pixels whose id is past tris stay 0 (nothing read)."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    _, tris, rast, _ = _scene(8)
    attr = _attr("shared", 8, torch.float32)
    attr, tris, rast = attr.to(device), tris.to(device), rast.to(device)
    half = tris[: F // 2]
    got, _ = interpolate(attr, rast, half, backend=device, validate=False)
    cut = rast.clone()
    cut[cut[..., 3] > F // 2] = 0.0  # the pixels the kernels must skip
    assert (cut[..., 3] != rast[..., 3]).any() and (cut[..., 3] > 0).any()
    ref, _ = interpolate(attr.cpu(), cut.cpu(), half.cpu(), backend="torch")
    torch.testing.assert_close(got.cpu(), ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- cuda kernels

_SIM_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_interpolate_fused import _scene, _attr, _run, _assert_matches
from difflod.render import interpolate as I
from difflod.render.backends import cuda_interpolate as K

def fused(a, r, t, d, ch):
    return I._interpolate_fused(a, r, t, d, ch, K, True)

bad = []
for dtype in (torch.float32, torch.float64):
    _, tris, rast, db = _scene(0, b=2, h=6, w=7, v=10, f=8, dtype=dtype)
    for kind in ("shared", "one", "per_image"):
        attr = _attr(kind, 0, dtype, b=2, v=10)
        for ch in (None, [2, 0, 2], []):
            d = None if ch is None else db
            try:
                _assert_matches(_run(I._interpolate_torch, attr, rast, tris, d, ch),
                                _run(fused, attr, rast, tris, d, ch), dtype, exact=False)
            except AssertionError as e:
                bad.append((str(dtype), kind, ch, str(e)[:300]))
_, tris, rast, db = _scene(1, b=1, h=5, w=6, v=8, f=6, dtype=torch.float64)
attr = _attr("shared", 1, torch.float64, b=1, v=8)
empty = torch.zeros_like(rast)
out, da = fused(attr[:0], empty, tris[:0], db, [])
if out.shape != (1, 5, 6, 4) or out.any():
    bad.append("empty mesh")
try:
    fused(attr, rast, tris[:1], None, None)
    bad.append("no error on triangle ids above F")
except ValueError as e:
    if "rast holds triangle ids" not in str(e):
        bad.append(str(e))
print("BAD", bad)
"""


def test_cuda_kernels_match_reference_in_numba_simulator(run_simulated) -> None:
    """The numba-cuda kernels, run by numba's CUDA simulator on CPU tensors, match the reference."""
    stdout = run_simulated(_SIM_SCRIPT.format(tests=str(Path(__file__).parent)))
    assert "BAD []" in stdout, stdout[-3000:]


_LAUNCH_SCRIPT = """
import sys, numpy as np, torch
sys.path.insert(0, {tests!r})
from test_interpolate_fused import _scene, _attr, _run, _assert_matches
from difflod.render import interpolate as I
from difflod.render.backends import cuda_interpolate as K

from simulator import count_launches

launches = count_launches(K)

def fused(a, r, t, d, ch):
    return I._interpolate_fused(a, r, t, d, ch, K, True)

_, tris, rast, db = _scene(2, b=2, h=5, w=6, v=10, f=8, dtype=torch.float32)
attr = _attr("shared", 2, torch.float32, b=2, v=10)
_assert_matches(_run(I._interpolate_torch, attr, rast, tris, db, [1, 0]),
                _run(fused, attr, rast, tris, db, [1, 0]), torch.float32, exact=False)
print("LAUNCHES", launches)
misses = K._meta.cache_info().misses
_run(fused, attr, rast, tris, db, [1, 0])
print("NEW_META_ON_SECOND_CALL", K._meta.cache_info().misses - misses)
"""


def test_cuda_launches_per_call_in_numba_simulator(run_simulated) -> None:
    """One launch each way with pinned argument counts; the metadata array is reused."""
    stdout = run_simulated(_LAUNCH_SCRIPT.format(tests=str(Path(__file__).parent)))
    line = [ln for ln in stdout.splitlines() if ln.startswith("LAUNCHES")]
    assert line, stdout[-3000:]
    assert ast.literal_eval(line[0][len("LAUNCHES"):]) == [
        ("_forward_kernel", 8, 0), ("_backward_kernel", 10, 2)]
    assert "NEW_META_ON_SECOND_CALL 0" in stdout


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_reference_on_gpu(cuda: torch.device, dtype: torch.dtype) -> None:
    """Realistic size on the GPU: 4 views of 256^2, 5000 triangles, 4-channel attributes."""
    clip, tris, _, _ = _scene(9, b=4, h=4, w=4, v=3000, f=5000)
    clip, tris = clip.to(cuda), tris.to(cuda)
    rast, db = rasterize(clip, tris, (256, 256), grad_db=True, backend="cuda")
    rast, db = rast.to(dtype), db.to(dtype)
    assert (rast[..., 3] > 0).float().mean() > 0.3
    for kind in ("shared", "per_image"):
        attr = _attr(kind, 9, dtype, b=4, v=3000).to(cuda)
        for ch in (None, "all", [1, 3]):
            d = None if ch is None else db
            ref = _run("torch", attr, rast, tris, d, ch)
            got = _run("cuda", attr, rast, tris, d, ch)
            _assert_matches(ref, got, dtype, exact=False)
    # the pipeline's compacted raster
    pix = (rast[..., 3].reshape(-1) > 0).nonzero().squeeze(1)
    rc, dc = (t.reshape(-1, 4)[pix].reshape(-1, 1, 1, 4) for t in (rast, db))
    attr = _attr("shared", 10, dtype, v=3000).to(cuda)
    _assert_matches(_run("torch", attr, rc, tris, dc, "all"), _run("cuda", attr, rc, tris, dc, "all"),
                    dtype, exact=False)


@pytest.mark.parametrize("kind", ["shared", "per_image"])
def test_cuda_warp_run_sums_on_gpu(cuda: torch.device, kind: str) -> None:
    """Runs of pixels on one triangle (the warp-summed atomics): runs of 1 to 40
    lanes across warp borders, a triangle coming back after another (A A B A),
    empty pixels inside runs and a last warp that is not full. Float64, so only
    the summation order differs from the reference."""
    g = torch.Generator().manual_seed(21)
    n_pix, f, v = 32 * 70 + 13, 6, 12
    tid = torch.empty(n_pix, dtype=torch.float64)
    i = 0
    while i < n_pix:
        length = int(torch.randint(1, 41, (1,), generator=g))
        tid[i:i + length] = float(torch.randint(0, f + 1, (1,), generator=g))  # 0: empty
        i += length
    tid[5::37] = 0.0  # single empty pixels inside runs
    tid[100:104] = torch.tensor([2.0, 2.0, 3.0, 2.0])  # a triangle back after another
    uv = torch.rand(n_pix, 2, generator=g, dtype=torch.float64) * 0.5
    rast = torch.cat([uv, torch.rand(n_pix, 1, generator=g, dtype=torch.float64),
                      tid[:, None]], -1)
    b = 1 if kind == "shared" else 3  # per_image: 3 images of one row each
    rast = rast[:n_pix - n_pix % b].reshape(b, 1, -1, 4)
    db = torch.rand(rast.shape, generator=g, dtype=torch.float64)
    tris = torch.randint(0, v, (f, 3), generator=g, dtype=torch.int32)
    attr = _attr(kind, 21, torch.float64, b=b, v=v)
    ref = _run("torch", attr, rast, tris, db, "all")
    got = _run("cuda", attr.to(cuda), rast.to(cuda), tris.to(cuda), db.to(cuda), "all")
    got = tuple(tuple(None if t is None else t.cpu() for t in x) if isinstance(x, tuple)
                else (None if x is None else x.cpu()) for x in got)
    _assert_matches(ref, got, torch.float64, exact=False)
