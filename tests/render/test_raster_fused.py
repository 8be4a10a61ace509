"""The fused barycentric kernels (cpu, cuda) held to raster_from_ids, the torch reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflod.render.backends import cpu_raster, get_backend
from difflod.render.peel import DepthPeeler
from difflod.render.rasterize import barycentrics, raster_from_ids, rasterize


def _scene(
    seed: int, b: int = 2, v: int = 90, f: int = 60, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random overlapping triangles; some cross the camera plane (w <= 0 at a vertex)."""
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(b, v, 4, generator=g, dtype=torch.float64)
    clip[..., 3] = clip[..., 3].abs() + 0.3
    clip[:, : v // 8, 3] *= -1
    clip[..., 2] *= 0.4
    tris = torch.randint(0, v, (f, 3), generator=g)
    return clip.to(dtype).contiguous(), tris


def _ids(clip: torch.Tensor, tris: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Triangle id + 1 per pixel `[B,H,W]` int32, from the cpu visibility kernel."""
    return get_backend("cpu", "cpu").visibility(
        clip.detach().float().contiguous(), tris.int().contiguous(), h, w, None
    )


def _grads(
    clip: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor | None], g_rast, g_db
) -> torch.Tensor:
    loss = 0.0
    if g_rast is not None:
        loss = loss + (out[0] * g_rast).sum()
    if g_db is not None:
        loss = loss + (out[1] * g_db).sum()
    (grad,) = torch.autograd.grad(loss, clip, retain_graph=True)
    return grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_cpu_matches_reference_values_and_gradients(seed: int, dtype: torch.dtype) -> None:
    clip, tris = _scene(seed, dtype=dtype)
    ids = _ids(clip, tris, 40, 56)
    assert (ids > 0).float().mean() > 0.3
    # some covered pixel belongs to a triangle crossing the camera plane
    crossing = (clip[:, tris, 3] <= 0).any(-1) & (clip[:, tris, 3] > 0).any(-1)  # [B,F]
    hit = torch.zeros_like(crossing)
    for bi in range(clip.shape[0]):
        hit[bi, ids[bi][ids[bi] > 0].long() - 1] = True
    assert (crossing & hit).any()
    c_ref = clip.clone().requires_grad_()
    c_cpu = clip.clone().requires_grad_()
    ref = raster_from_ids(c_ref, tris, ids, True)
    cpu = barycentrics(c_cpu, tris, ids, True, "cpu")
    assert cpu[0].dtype == dtype and cpu[1].dtype == dtype
    assert torch.equal(cpu[0][..., 3], ref[0][..., 3])
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(cpu[0], ref[0], **tol)
    torch.testing.assert_close(cpu[1], ref[1], **tol)
    g = torch.Generator().manual_seed(seed + 10)
    g_rast = torch.randn(ref[0].shape, generator=g, dtype=torch.float64).to(dtype)
    g_db = torch.randn(ref[1].shape, generator=g, dtype=torch.float64).to(dtype)
    for gr, gd in ((g_rast, None), (None, g_db), (g_rast, g_db)):
        want = _grads(c_ref, ref, gr, gd)
        got = _grads(c_cpu, cpu, gr, gd)
        assert got.dtype == dtype
        assert want.abs().max() > 0
        scale = want.abs().max()
        torch.testing.assert_close(got / scale, want / scale, rtol=0, atol=tol["atol"])


def test_cpu_without_rast_db_matches_reference() -> None:
    clip, tris = _scene(3, b=1)
    ids = _ids(clip, tris, 24, 31)
    c_ref = clip.clone().requires_grad_()
    c_cpu = clip.clone().requires_grad_()
    ref = raster_from_ids(c_ref, tris, ids, False)
    cpu = barycentrics(c_cpu, tris, ids, False, "cpu")
    assert cpu[1] is None
    torch.testing.assert_close(cpu[0], ref[0], rtol=1e-5, atol=1e-5)
    g_rast = torch.randn(ref[0].shape, generator=torch.Generator().manual_seed(4))
    want = _grads(c_ref, ref, g_rast, None)
    torch.testing.assert_close(_grads(c_cpu, cpu, g_rast, None), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_one_pass_forward_equals_ids_then_barycentrics(dtype: torch.dtype) -> None:
    """rasterize's one pass (visibility writing rast, rast_db) = visibility, then barycentrics."""
    clip, tris = _scene(9, b=3, dtype=dtype)
    h, w = 37, 53  # three bands of rows, the last one partial
    want_ids = _ids(clip, tris, h, w)
    assert (want_ids > 0).float().mean() > 0.3
    g = torch.Generator().manual_seed(19)
    for grad_db in (True, False):
        ids, rast, rast_db, saved = cpu_raster.rasterize_forward(clip, tris, h, w, grad_db)
        assert saved == ()
        assert torch.equal(ids, want_ids)
        rast2, db2, saved2 = cpu_raster.barycentrics_forward(clip, tris, want_ids, grad_db)
        assert rast.dtype == dtype and torch.equal(rast, rast2)
        assert not rast[ids == 0].any()  # empty pixels are written (outputs are not pre-zeroed)
        if grad_db:
            assert torch.equal(rast_db, db2) and not rast_db[ids == 0].any()
        else:
            assert rast_db is None
        # the backward builds the pairs and planes itself when the forward saved none
        g_rast = torch.randn(rast.shape, generator=g, dtype=dtype)
        g_db = torch.randn(rast.shape, generator=g, dtype=dtype) if grad_db else None
        got = cpu_raster.barycentrics_backward(clip, tris, ids, saved, g_rast, g_db)
        want = cpu_raster.barycentrics_backward(clip, tris, ids, saved2, g_rast, g_db)
        assert want.abs().max() > 0 and torch.equal(got, want)


def test_cpu_gradcheck_float64() -> None:
    clip, tris = _scene(5, b=2, v=12, f=5, dtype=torch.float64)
    ids = _ids(clip, tris, 9, 11)
    assert (ids > 0).sum() > 10

    def fused(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rast, rast_db = barycentrics(c, tris, ids, True, "cpu")
        return rast[..., :3], rast_db

    def fused_no_db(c: torch.Tensor) -> torch.Tensor:
        return barycentrics(c, tris, ids, False, "cpu")[0][..., :3]

    c = clip.clone().requires_grad_()
    # fast mode: Jacobian-vector products in random directions (one backward each)
    for fn in (fused, fused_no_db):
        assert torch.autograd.gradcheck(fn, (c,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_rasterize_and_peeler_use_the_fused_path() -> None:
    clip, tris = _scene(6, b=3)
    c_ref = clip.clone().requires_grad_()
    c_cpu = clip.clone().requires_grad_()
    r_ref, db_ref = rasterize(c_ref, tris, (30, 20), grad_db=True, backend="torch")
    r_cpu, db_cpu = rasterize(c_cpu, tris, (30, 20), grad_db=True, backend="cpu")
    assert r_cpu.grad_fn is not None and "Barycentrics" in type(r_cpu.grad_fn).__name__
    torch.testing.assert_close(r_cpu, r_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(db_cpu, db_ref, rtol=1e-5, atol=1e-5)
    layers = {}
    for name, c in (("torch", c_ref), ("cpu", c_cpu)):
        with DepthPeeler(c, tris, (30, 20), grad_db=True, backend=name) as peeler:
            layers[name] = [peeler.rasterize_next_layer() for _ in range(3)]
    loss = {}
    for name, c in (("torch", c_ref), ("cpu", c_cpu)):
        total = sum(r[..., :3].sum() * (i + 1) + d.sum() for i, (r, d) in enumerate(layers[name]))
        (loss[name],) = torch.autograd.grad(total, c)
    for (r0, d0), (r1, d1) in zip(layers["torch"], layers["cpu"], strict=True):
        torch.testing.assert_close(r1, r0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d1, d0, rtol=1e-5, atol=1e-5)
    assert (layers["cpu"][1][0][..., 3] > 0).any()
    scale = loss["torch"].abs().max()
    torch.testing.assert_close(loss["cpu"] / scale, loss["torch"] / scale, rtol=0, atol=1e-5)


def test_empty_raster_and_empty_mesh() -> None:
    clip, tris = _scene(7, b=2)
    c = clip.clone().requires_grad_()
    empty = torch.zeros(2, 8, 9, dtype=torch.int32)
    rast, rast_db = barycentrics(c, tris, empty, True, "cpu")
    assert rast.shape == (2, 8, 9, 4) and not rast.any() and not rast_db.any()
    (grad,) = torch.autograd.grad(rast.sum() + rast_db.sum(), c)
    assert grad.shape == clip.shape and not grad.any()
    no_tris = torch.zeros(0, 3, dtype=torch.int64)
    c = clip.clone().requires_grad_()
    rast, rast_db = rasterize(c, no_tris, (5, 6), grad_db=True, backend="cpu")
    assert rast.shape == (2, 5, 6, 4) and not rast.any() and not rast_db.any()
    (grad,) = torch.autograd.grad(rast.sum() + rast_db.sum(), c)
    assert not grad.any()


def test_unknown_backend_name_is_a_value_error() -> None:
    clip, tris = _scene(8, b=1)
    with pytest.raises(ValueError, match="backend_name"):
        barycentrics(clip, tris, torch.zeros(1, 4, 4, dtype=torch.int32), False, "opengl")


_SIM_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_raster_fused import _ids, _scene
from difflod.render.rasterize import barycentrics, raster_from_ids
bad = []
cases = [(torch.float32, 0, True), (torch.float64, 1, True), (torch.float64, 2, False)]
for dtype, seed, with_db in cases:
    clip, tris = _scene(seed, b=2, v=12, f=6, dtype=dtype)
    ids = _ids(clip, tris, 12, 16)
    if not (ids > 0).any():
        bad.append(("empty scene", seed))
    c_ref = clip.clone().requires_grad_()
    c_gpu = clip.clone().requires_grad_()
    ref = raster_from_ids(c_ref, tris, ids, with_db)
    got = barycentrics(c_gpu, tris, ids, with_db, "cuda")
    if "Barycentrics" not in type(got[0].grad_fn).__name__:
        bad.append(("not the fused path", type(got[0].grad_fn).__name__))
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    for name, a, b in (("rast", ref[0], got[0]), ("rast_db", ref[1], got[1])):
        if a is None and b is None:
            continue
        if not torch.allclose(a, b, rtol=tol, atol=tol):
            bad.append((name, seed, float((a - b).abs().max())))
    g = torch.Generator().manual_seed(seed)
    g_rast = torch.randn(ref[0].shape, generator=g, dtype=torch.float64).to(dtype)
    g_db = torch.randn(ref[0].shape, generator=g, dtype=torch.float64).to(dtype)
    pairs = ((g_rast, None), (None, g_db), (g_rast, g_db)) if with_db else ((g_rast, None),)
    for gr, gd in pairs:
        grads = []
        for c, out in ((c_ref, ref), (c_gpu, got)):
            loss = sum((o * u).sum() for o, u in zip(out, (gr, gd)) if u is not None)
            grads.append(torch.autograd.grad(loss, c, retain_graph=True)[0])
        scale = float(grads[0].abs().max())
        if scale == 0 or not torch.allclose(grads[1] / scale, grads[0] / scale, rtol=0, atol=tol):
            bad.append(("grad", seed, gr is None, gd is None, scale))
# an empty raster: zeros and zero gradients
clip, tris = _scene(3, b=1, v=12, f=6)
c = clip.clone().requires_grad_()
rast, rast_db = barycentrics(c, tris, torch.zeros(1, 5, 7, dtype=torch.int32), True, "cuda")
grad = torch.autograd.grad(rast.sum() + rast_db.sum(), c)[0]
if rast.any() or rast_db.any() or grad.any():
    bad.append(("empty raster",))
print("BAD", bad)
"""


def test_cuda_kernels_match_reference_in_numba_simulator(run_simulated) -> None:
    """The numba-cuda kernels, run by numba's CUDA simulator on the CPU, match the reference."""
    stdout = run_simulated(_SIM_SCRIPT.format(tests=str(Path(__file__).parent)))
    assert "BAD []" in stdout, stdout[-2000:]


def _sphere_views(
    n_views: int, device: torch.device, n_tris: int = 20000
) -> tuple[torch.Tensor, torch.Tensor]:
    """clip `[B,V,4]` float32 of a UV sphere seen from n_views cameras, tris `[F,3]` int64."""
    from difflod.scene.camera import look_at, perspective

    rings = round((n_tris / 4) ** 0.5)
    segs = round(n_tris / (2 * rings))
    th = torch.linspace(0, torch.pi, rings + 1, dtype=torch.float64)
    ph = torch.linspace(0, 2 * torch.pi, segs + 1, dtype=torch.float64)
    t, p = torch.meshgrid(th, ph, indexing="ij")
    pos = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], dim=-1).reshape(-1, 3)
    idx = torch.arange((rings + 1) * (segs + 1)).reshape(rings + 1, segs + 1)
    a, b = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    c, d = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    tris = torch.cat([torch.stack([a, c, b], 1), torch.stack([b, c, d], 1)])
    proj = perspective(0.8, 1.0, 0.1, 10.0)
    mats = torch.stack([
        proj @ look_at([2.5 * torch.cos(torch.tensor(k * 1.3)).item(), 0.5,
                        2.5 * torch.sin(torch.tensor(k * 1.3)).item()], [0, 0, 0], [0, 1, 0])
        for k in range(n_views)
    ]).double()
    hom = torch.cat([pos, torch.ones_like(pos[:, :1])], dim=1)
    clip = (hom @ mats.transpose(1, 2)).float()
    return clip.to(device).contiguous(), tris.to(device)


def test_cuda_matches_reference_on_gpu(cuda: torch.device) -> None:
    clip, tris = _sphere_views(4, cuda)
    rast_ref, _ = rasterize(clip, tris, (256, 256), backend="cuda")
    ids = rast_ref[..., 3].to(torch.int32)
    assert (ids > 0).float().mean() > 0.2
    c_ref = clip.clone().requires_grad_()
    c_gpu = clip.clone().requires_grad_()
    ref = raster_from_ids(c_ref, tris, ids, True)
    got = barycentrics(c_gpu, tris, ids, True, "cuda")
    assert "Barycentrics" in type(got[0].grad_fn).__name__  # the fused kernels ran
    assert got[0].device.type == "cuda" and got[0].dtype == torch.float32
    assert torch.equal(got[0][..., 3], ref[0][..., 3])
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-4, atol=1e-5)
    g = torch.Generator(device=cuda).manual_seed(0)
    g_rast = torch.randn(ref[0].shape, generator=g, device=cuda)
    g_db = torch.randn(ref[0].shape, generator=g, device=cuda)
    for gr, gd in ((g_rast, None), (None, g_db), (g_rast, g_db)):
        want = _grads(c_ref, ref, gr, gd)
        got_g = _grads(c_gpu, got, gr, gd)
        scale = want.abs().max()
        assert scale > 0
        torch.testing.assert_close(got_g / scale, want / scale, rtol=0, atol=1e-5)
    # float64 on the GPU: the same formulas, so near-exact agreement
    c64 = clip.double().requires_grad_()
    r64 = barycentrics(c64, tris, ids, True, "cuda")
    ref64 = raster_from_ids(c64, tris, ids, True)
    torch.testing.assert_close(r64[0], ref64[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r64[1], ref64[1], rtol=1e-9, atol=1e-9)
    # the whole rasterize() and the peeler on the cuda backend
    with DepthPeeler(clip, tris, (64, 64), grad_db=True, backend="cuda") as peeler:
        layers = [peeler.rasterize_next_layer() for _ in range(2)]
    with DepthPeeler(clip.cpu(), tris.cpu(), (64, 64), grad_db=True, backend="torch") as peeler:
        layers_ref = [peeler.rasterize_next_layer() for _ in range(2)]
    for (r1, d1), (r0, d0) in zip(layers, layers_ref, strict=True):
        assert torch.equal(r1[..., 3].cpu(), r0[..., 3])
        torch.testing.assert_close(r1.cpu(), r0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d1.cpu(), d0, rtol=1e-4, atol=1e-5)
