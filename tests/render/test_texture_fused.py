"""The fused texture kernels ("cpu": numba; "cuda": numba-cuda) against the torch reference.

Scenes come from the real rasterizer and interpolator (uv and its screen
derivatives over a random textured mesh), so the samples cover magnified and
minified areas, triangle edges and background pixels. Outputs and the
gradients of every differentiable input (texture, caller mip levels, uv,
uv_da) under random upstream gradients are held to the torch path. The CUDA
kernels run in numba's simulator on tiny scenes (subprocess), and on a real
GPU when one is present.
"""

from __future__ import annotations

import ast
import math
import zlib
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

from difflod.render.interpolate import interpolate
from difflod.render.rasterize import rasterize
from difflod.render.texture import texture
from difflod.scene.camera import look_at, perspective

MODES = ("linear", "linear-mipmap-nearest", "linear-mipmap-linear")
BOUNDARIES = ("wrap", "clamp", "zero")


def _scene(seed: int, b: int = 2, res: int = 24, n_tris: int = 6, uv_scale: float = 3.0,
           device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(uv `[b,res,res,2]`, uv_da `[b,res,res,4]`) of a random triangle soup, detached."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n_tris * 3, 3, generator=g) * 1.6 - 0.8
    v_uv = torch.rand(n_tris * 3, 2, generator=g) * uv_scale - 0.5 * uv_scale + 0.5
    tris = torch.arange(n_tris * 3, dtype=torch.int32).reshape(n_tris, 3)
    proj = perspective(math.radians(50), 1.0, 0.1, 10.0)
    mats = [proj @ look_at([2.5 * math.sin(a), 0.4, 2.5 * math.cos(a)], [0, 0, 0], [0, 1, 0])
            for a in torch.linspace(0.0, 0.6, b).tolist()]
    mvp = torch.stack(mats).to(torch.float32)
    clip = torch.cat([pos, torch.ones(pos.shape[0], 1)], 1) @ mvp.transpose(1, 2)
    rast, rast_db = rasterize(clip, tris, (res, res), grad_db=True, backend="torch")
    uv, uv_da = interpolate(v_uv, rast, tris, rast_db=rast_db, diff_attrs="all",
                            backend="torch")
    return uv.detach().to(device), uv_da.detach().to(device)


def _grads(backend: str, tex: torch.Tensor, uv: torch.Tensor, uv_da: torch.Tensor,
           mip: list[torch.Tensor] | None = None, **kw) -> list[torch.Tensor | None]:
    """[out, g_tex, g_uv, g_uv_da, g_mip1, ...] under a fixed random upstream gradient."""
    tex = tex.clone().requires_grad_(True)
    uv = uv.clone().requires_grad_(True)
    uv_da = uv_da.clone().requires_grad_(True)
    levels = None if mip is None else [m.clone().requires_grad_(True) for m in mip]
    mode = kw.get("filter_mode", "auto")
    out = texture(tex, uv, uv_da if mode != "linear" else None, mip=levels, backend=backend,
                  **kw)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(out.shape, generator=g, dtype=out.dtype)
    w.view(-1, w.shape[-1])[::5] = 0.0  # pixels with no gradient (the GPU kernel's early exit)
    (out * w.to(out.device)).sum().backward()
    res = [out.detach(), tex.grad, uv.grad, uv_da.grad if mode != "linear" else None]
    return res + ([m.grad for m in levels[1:]] if levels else [])


def _assert_close(ref, got, tol=2e-5) -> None:
    names = ["out", "g_tex", "g_uv", "g_uv_da"] + [f"g_mip{k}" for k in range(1, 20)]
    for name, a, b in zip(names, ref, got):
        if a is None or not a.abs().any():
            assert b is None or not b.abs().any(), name
            continue
        assert b is not None, name
        scale = a.abs().max().clamp(min=1.0)
        err = (a.cpu() - b.cpu()).abs().max()
        assert err <= tol * scale, (name, float(err))


# ----------------------------------------------------------------------------- cpu

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("tex_batch", [0, 1, 2])
def test_cpu_matches_torch_on_rasterized_scenes(mode, boundary, tex_batch):
    seed = zlib.crc32(repr((mode, boundary, tex_batch)).encode())
    uv, uv_da = _scene(seed)
    g = torch.Generator().manual_seed(seed)
    shape = (tex_batch, 32, 16, 3) if tex_batch else (32, 16, 3)
    tex = torch.rand(shape, generator=g)
    ref = _grads("torch", tex, uv, uv_da, filter_mode=mode, boundary_mode=boundary)
    got = _grads("cpu", tex, uv, uv_da, filter_mode=mode, boundary_mode=boundary)
    assert ref[0].abs().sum() > 0 and ref[2].abs().sum() > 0  # the scene is textured
    _assert_close(ref, got)


@pytest.mark.parametrize("kw", [{"max_mip_level": 2}, {"max_mip_level": 0}, {}])
def test_cpu_matches_torch_with_caller_mips_and_max_level(kw):
    uv, uv_da = _scene(5, uv_scale=6.0)
    g = torch.Generator().manual_seed(5)
    tex = torch.rand(2, 16, 16, 2, generator=g)
    mip = [tex, torch.rand(2, 8, 8, 2, generator=g), torch.rand(2, 3, 5, 2, generator=g),
           torch.rand(2, 1, 1, 2, generator=g)]
    for m in (mip, None):
        ref = _grads("torch", tex, uv, uv_da, mip=m, filter_mode="linear-mipmap-linear", **kw)
        got = _grads("cpu", tex, uv, uv_da, mip=m, filter_mode="linear-mipmap-linear", **kw)
        _assert_close(ref, got)


@pytest.mark.parametrize("shape", [(12, 10, 3), (7, 4, 1), (1, 1, 2)])
def test_cpu_odd_and_tiny_textures(shape):
    uv, uv_da = _scene(9, b=1, uv_scale=8.0)
    tex = torch.rand(shape, generator=torch.Generator().manual_seed(9))
    for mode in MODES:
        _assert_close(_grads("torch", tex, uv, uv_da, filter_mode=mode),
                      _grads("cpu", tex, uv, uv_da, filter_mode=mode))


def test_cpu_empty_raster_and_empty_mesh():
    tex = torch.rand(8, 8, 3)
    # a raster with no pixels
    uv0, da0 = torch.zeros(2, 0, 5, 2), torch.zeros(2, 0, 5, 4)
    for mode in MODES:
        ref = _grads("torch", tex, uv0, da0, filter_mode=mode)
        got = _grads("cpu", tex, uv0, da0, filter_mode=mode)
        assert got[0].shape == (2, 0, 5, 3)
        _assert_close(ref, got)
    # a mesh without triangles: every pixel is background (uv = 0, uv_da = 0)
    clip = torch.zeros(1, 0, 4)
    rast, db = rasterize(clip, torch.zeros(0, 3, dtype=torch.int32), (8, 8), grad_db=True,
                         backend="torch")
    uv, da = interpolate(torch.zeros(0, 2), rast, torch.zeros(0, 3, dtype=torch.int32),
                         rast_db=db, diff_attrs="all", backend="torch")
    for mode in MODES:
        _assert_close(_grads("torch", tex, uv, da, filter_mode=mode),
                      _grads("cpu", tex, uv, da, filter_mode=mode))


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_cpu_gradcheck_float64_batched_textures_and_caller_mips(boundary):
    uv, uv_da = _scene(3, b=2, res=4, n_tris=2, uv_scale=2.0)
    uv = ((torch.floor(uv * 8) + 0.3) / 8).double()  # away from the bilinear kinks
    uv_da = (uv_da * 4).double()
    g = torch.Generator().manual_seed(3)
    tex = torch.rand(2, 4, 4, 2, generator=g, dtype=torch.float64)
    lvl1 = torch.rand(2, 2, 2, 2, generator=g, dtype=torch.float64)

    def own(t, u, d):
        return texture(t, u, d, filter_mode="linear-mipmap-linear", boundary_mode=boundary,
                       backend="cpu")

    def given(t, m, u, d):
        return texture(t, u, d, mip=[t, m], filter_mode="linear-mipmap-linear",
                       boundary_mode=boundary, backend="cpu")

    ins = [x.clone().requires_grad_(True) for x in (tex, uv, uv_da)]
    assert torch.autograd.gradcheck(own, ins, eps=1e-6, atol=1e-5)
    ins = [x.clone().requires_grad_(True) for x in (tex, lvl1, uv, uv_da)]
    assert torch.autograd.gradcheck(given, ins, eps=1e-6, atol=1e-5)


def test_cpu_texel_gradient_does_not_depend_on_the_thread_count():
    uv, uv_da = _scene(8, b=2, res=48, uv_scale=2.0)
    tex = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(8))
    before = numba.get_num_threads()
    runs = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            runs.append(_grads("cpu", tex, uv, uv_da, filter_mode="linear-mipmap-linear"))
    finally:
        numba.set_num_threads(before)
    ref = _grads("torch", tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    _assert_close(ref, runs[0])
    for a, b in zip(runs[0], runs[-1]):
        assert torch.equal(a, b)


def test_cpu_only_needed_gradients():
    uv, uv_da = _scene(4)
    tex = torch.rand(16, 16, 3, requires_grad=True)
    out = texture(tex, uv, uv_da.requires_grad_(False), backend="cpu")
    out.sum().backward()
    ref_tex = tex.grad.clone()
    tex.grad = None
    texture(tex, uv, uv_da, backend="torch").sum().backward()
    torch.testing.assert_close(ref_tex, tex.grad, atol=2e-5, rtol=0)
    uv_g = uv.clone().requires_grad_(True)
    texture(tex.detach(), uv_g, uv_da, backend="cpu").sum().backward()
    assert uv_g.grad is not None and uv_g.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- cuda (simulator)

_SIM_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
import difflod.render.texture as T
from test_texture_fused import _scene, _grads, _assert_close

class _Cuda:
    name = "cuda"

real = T.get_backend
def fake(name, device):
    return _Cuda() if name == "cuda" else real(name, device)
T.get_backend = fake
assert T._cuda_kernels()
bad = []
g = torch.Generator().manual_seed(0)
cases = [(m, bd, tb) for m in {modes!r} for bd in {boundaries!r} for tb in (0, 2)]
for i, (mode, bd, tb) in enumerate(cases):
    if (i % 2) != (tb == 2):
        continue  # half the grid: shared and batched textures alternate
    uv, da = _scene(i, b=2, res=6, n_tris=3)
    tex = torch.rand((tb, 8, 4, 2) if tb else (8, 4, 2), generator=g)
    for dtype in (torch.float32, torch.float64):
        t, u, d = tex.to(dtype), uv.to(dtype), da.to(dtype)
        try:
            _assert_close(_grads("torch", t, u, d, filter_mode=mode, boundary_mode=bd),
                          _grads("cuda", t, u, d, filter_mode=mode, boundary_mode=bd))
        except AssertionError as e:
            bad.append((mode, bd, tb, str(dtype), str(e)))
# caller mips (gradients to each level) and max_mip_level
uv, da = _scene(7, b=1, res=6, n_tris=3, uv_scale=6.0)
tex = torch.rand(8, 8, 1, generator=g)
mip = [tex, torch.rand(4, 4, 1, generator=g), torch.rand(1, 3, 1, generator=g)]
for kw in ({{"mip": mip}}, {{"max_mip_level": 1}}):
    try:
        _assert_close(_grads("torch", tex, uv, da, filter_mode="linear-mipmap-linear", **kw),
                      _grads("cuda", tex, uv, da, filter_mode="linear-mipmap-linear", **kw))
    except AssertionError as e:
        bad.append(("mip", str(kw.keys()), str(e)))
print("BAD", bad)
"""


def test_cuda_kernels_match_torch_in_numba_simulator(run_simulated):
    """The numba-cuda kernels, run by numba's CUDA simulator on CPU tensors, match torch."""
    script = _SIM_SCRIPT.format(tests=str(Path(__file__).parent), modes=MODES,
                                boundaries=BOUNDARIES)
    stdout = run_simulated(script, timeout=900)
    assert "BAD []" in stdout, stdout[-3000:]


_LAUNCH_SCRIPT = """
import sys, numpy as np, torch
sys.path.insert(0, {tests!r})
import difflod.render.texture as T
from difflod.render.backends import cuda_texture as K
from test_texture_fused import _scene, _grads, _assert_close

class _Cuda:
    name = "cuda"

real = T.get_backend
T.get_backend = lambda name, device: _Cuda() if name == "cuda" else real(name, device)
from simulator import count_launches

launches = count_launches(K)
uv, da = _scene(3, b=2, res=6, n_tris=3, uv_scale=40.0)
tex = torch.rand(2, 64, 64, 2, generator=torch.Generator().manual_seed(3))
ref = _grads("torch", tex, uv, da, filter_mode="linear-mipmap-linear")
got = _grads("cuda", tex, uv, da, filter_mode="linear-mipmap-linear")
_assert_close(ref, got)
print("LAUNCHES", launches)
misses = K._meta.cache_info().misses
_grads("cuda", tex, uv, da, filter_mode="linear-mipmap-linear")
print("NEW_LAYOUTS_ON_SECOND_CALL", K._meta.cache_info().misses - misses)
"""


def test_cuda_texture_launches_per_call_in_numba_simulator(run_simulated):
    """Launches and array arguments per texture call are pinned (host cost on a GPU).

    A batch of two 64x64 textures (7 levels): the pyramid takes three launches
    forward (levels 1-2, 3-4, then 5-6 from the small level 4) and three backward,
    the sampler one each way; results still match torch (the two-launch
    pyramid is a path the other simulator tests do not take), and a second
    call reuses the cached level metadata.
    """
    stdout = run_simulated(_LAUNCH_SCRIPT.format(tests=str(Path(__file__).parent)))
    line = [ln for ln in stdout.splitlines() if ln.startswith("LAUNCHES")]
    assert line, stdout[-3000:]
    assert ast.literal_eval(line[0][len("LAUNCHES"):]) == [
        ("_mips_down_kernel", 3, 3), ("_mips_down_kernel", 3, 3), ("_mips_down_kernel", 3, 3),
        ("_fwd_kernel", 8, 0),
        ("_bwd_kernel", 11, 1), ("_mips_up_kernel", 4, 3), ("_mips_up_kernel", 4, 3),
        ("_mips_up_kernel", 4, 3)]
    assert "NEW_LAYOUTS_ON_SECOND_CALL 0" in stdout  # metadata reused, not copied again


def test_cuda_mip_launch_plan_builds_every_level_once_in_few_launches():
    """The plan's contract, checked over many shapes rather than restated for three:
    launches build levels 1..top in order, each level once; a launch from a large
    source level builds at most _LEVELS_PER_LAUNCH levels (the thread per top texel
    loops over 4^m source texels), and as many as it may; once the source level is
    small (nb * texels <= _SMALL_LEVEL) one launch builds all the rest."""
    from difflod.render.backends import cuda_texture as ct
    from difflod.render.texture import _even_mip_sizes

    for h, w, nb in [(1024, 1024, 1), (512, 256, 8), (8, 4, 1), (2048, 64, 1), (64, 64, 1),
                     (128, 128, 1), (256, 256, 2), (1, 1, 1), (4096, 4096, 1), (256, 64, 3)]:
        sizes = _even_mip_sizes(h, w, None)
        hs = np.array([s[0] for s in sizes])
        ws = np.array([s[1] for s in sizes])
        top = len(sizes) - 1
        steps = ct._mip_launches(hs, ws, nb)
        built = [lvl for s, m in steps for lvl in range(s + 1, s + m + 1)]
        assert built == list(range(1, top + 1)), (h, w, nb, steps)
        for k, (s, m) in enumerate(steps):
            small = nb * int(hs[s] * ws[s]) <= ct._SMALL_LEVEL
            if small:
                assert s + m == top and k == len(steps) - 1, (h, w, nb, steps)
            else:
                assert m == min(ct._LEVELS_PER_LAUNCH, top - s), (h, w, nb, steps)
        if top >= 6:  # the docstring's promise: far fewer launches than levels
            assert len(steps) <= -(-top // ct._LEVELS_PER_LAUNCH), (h, w, nb, steps)


# ----------------------------------------------------------------------------- cuda (GPU)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_cuda_matches_torch_on_gpu(mode, boundary):
    uv, uv_da = _scene(11, b=4, res=256, n_tris=40, device="cuda")
    g = torch.Generator().manual_seed(11)
    for tex in (torch.rand(512, 512, 3, generator=g), torch.rand(4, 64, 128, 4, generator=g)):
        tex = tex.cuda()
        ref = _grads("torch", tex, uv, uv_da, filter_mode=mode, boundary_mode=boundary)
        got = _grads("cuda", tex, uv, uv_da, filter_mode=mode, boundary_mode=boundary)
        _assert_close(ref, got, tol=1e-4)  # atomics add in another order than index_add_
    mip = [tex, torch.rand(4, 32, 64, 4, generator=g).cuda(),
           torch.rand(4, 5, 3, 4, generator=g).cuda()]
    if mode != "linear":
        _assert_close(_grads("torch", tex, uv, uv_da, mip=mip, filter_mode=mode,
                             boundary_mode=boundary),
                      _grads("cuda", tex, uv, uv_da, mip=mip, filter_mode=mode,
                             boundary_mode=boundary), tol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_texel_gradient_when_every_pixel_hits_one_texel():
    """All samples on one texel (as background pixels at uv = 0 are): the warp-summed
    atomics give the exact count, and a half-covered warp (the else branch) too."""
    tex = torch.rand(64, 64, 3, device="cuda", requires_grad=True)
    n = 4096 + 17  # not a multiple of the warp: the last warp is partial
    uv = torch.full((1, 1, n, 2), (5 + 0.5) / 64, device="cuda")  # texel (5, 5)'s centre
    uv[0, 0, 1::2, 0] = (9 + 0.5) / 64  # every other pixel: texel (5, 9); warps mixed
    for sel in (slice(None), slice(0, None, 2)):
        tex.grad = None
        texture(tex, uv[:, :, sel].contiguous(), filter_mode="linear", backend="cuda").sum().backward()
        count = uv[:, :, sel].shape[2]
        expect = torch.zeros(64, 64, 3, device="cuda")
        if sel.step is None:
            expect[5, 5] = (count + 1) // 2
            expect[5, 9] = count // 2
        else:
            expect[5, 5] = count
        torch.testing.assert_close(tex.grad, expect, atol=1e-3, rtol=0)
