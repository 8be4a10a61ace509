"""The fused shading op (render/shade_op.py; backends/cpu_shade.py's shade_pixel, run
by its own loops and by cuda_shade.py) held to the plain-torch shader (shading/shade.py):
colours and the gradients of all eight G-buffer inputs in float64 to rounding,
float64 gradcheck of the op itself, float32 to float32 rounding, and the cases
where the reference must run. The CUDA kernels run under numba's simulator here,
and on the device on a GPU machine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from difflod.render import shade_op
from difflod.shading import shade as reference

INPUTS = ("gb_pos", "gb_geom_normal", "gb_normal", "gb_tangent", "gb_kd", "gb_ks", "gb_nmap",
          "gb_ke")


def _gbuffer(b: int, h: int, w: int, seed: int, *, nmap: bool = True, ke: bool = True,
             per_pixel_eye: bool = False, dtype: torch.dtype = torch.float64,
             zero_normals: bool = False) -> dict:
    """Random G-buffer `[b,h,w,C]`: map z below 0, negative handedness, back faces
    (random normals face away from the eye half the time), metals, rough and
    smooth surfaces (roughness below min_roughness included); with zero_normals a
    zero-length normal and geometric normal too."""
    g = torch.Generator().manual_seed(seed)

    def r(c: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
        return (torch.rand(b, h, w, c, generator=g, dtype=torch.float64) * (hi - lo) + lo)

    smooth, geom = r(3), r(3)
    if zero_normals:
        smooth[0, 0, 0] = 0.0
        geom[0, 0, 1] = 0.0
    tangent = torch.cat([r(3), torch.where(r(1) < 0, -1.0, 1.0)], -1)
    rows = b * h * w if per_pixel_eye else b
    buf = {
        "gb_pos": r(3, -0.5, 0.5), "gb_geom_normal": geom, "gb_normal": smooth,
        "gb_tangent": tangent if nmap else None, "gb_kd": r(3, 0.0), "gb_ks": r(3, 0.0),
        "gb_nmap": r(3) if nmap else None, "gb_ke": r(3, 0.0, 2.0) if ke else None,
        "view_pos": torch.rand(rows, 3, generator=g, dtype=torch.float64) * 6 - 3,
        "light_pos": torch.rand(rows, 3, generator=g, dtype=torch.float64) * 6 - 3,
        "light_power": torch.rand(rows, generator=g, dtype=torch.float64) * 4 + 1,
    }
    if per_pixel_eye:  # the renderer's compacted layout: one row per pixel
        buf = {k: (v.reshape(rows, 1, 1, v.shape[-1]) if k in INPUTS and v is not None else v)
               for k, v in buf.items()}
    return {k: (v.to(dtype).requires_grad_(k in INPUTS) if isinstance(v, torch.Tensor) else v)
            for k, v in buf.items()}


def _run(fn, buf: dict, **kw) -> tuple[torch.Tensor, dict]:
    leaves = {k: v for k, v in buf.items() if k in INPUTS and v is not None}
    for t in leaves.values():
        t.grad = None
    out = fn(**buf, min_roughness=0.08, **kw)
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype,
                             device=out.device).reshape(-1, 3)
    weights[::4] = 0.0  # pixels with no gradient (the GPU kernel's early exit)
    weights = weights.reshape(out.shape)
    (out * weights).sum().backward()
    return out.detach(), {k: t.grad.clone() for k, t in leaves.items()}


def _ran_fused(out: torch.Tensor) -> bool:
    fns, seen = [out.grad_fn], 0
    while fns and seen < 6:
        if any(type(f).__name__ == "_FusedBackward" for f in fns):
            return True
        fns = [n for f in fns if f is not None for n, _ in f.next_functions]
        seen += 1
    return False


@pytest.mark.parametrize(("nmap", "ke", "falloff", "per_pixel_eye"),
                         [(True, True, False, False), (True, False, True, True),
                          (False, True, True, False), (False, False, False, True)])
def test_fused_equals_reference_in_float64(nmap: bool, ke: bool, falloff: bool,
                                           per_pixel_eye: bool) -> None:
    buf = _gbuffer(2, 9, 11, 1, nmap=nmap, ke=ke, per_pixel_eye=per_pixel_eye)
    want, want_g = _run(reference.shade, buf, light_falloff=falloff, normal_scale=0.7)
    got, got_g = _run(shade_op.shade, buf, light_falloff=falloff, normal_scale=0.7)
    assert _ran_fused(shade_op.shade(**buf, light_falloff=falloff))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert got_g.keys() == want_g.keys()
    for k in want_g:
        assert float(want_g[k].abs().sum()) > 0, k
        torch.testing.assert_close(got_g[k], want_g[k], rtol=1e-9, atol=1e-9, msg=k)


def test_zero_length_normals_as_the_reference() -> None:
    """safe_normalize's clamp: a zero normal shades as the reference does; its
    gradient is the upstream one times 1e10 (1 / sqrt(1e-20)), so rounding noise
    of ~1e-16 upstream shows, and gradients are compared to their largest value."""
    buf = _gbuffer(1, 5, 5, 6, zero_normals=True)
    want, want_g = _run(reference.shade, buf)
    got, got_g = _run(shade_op.shade, buf)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for k in want_g:
        scale = float(want_g[k].abs().max())
        assert torch.isfinite(got_g[k]).all(), k
        torch.testing.assert_close(got_g[k], want_g[k], rtol=1e-6, atol=1e-6 * scale, msg=k)


def test_fused_gradcheck() -> None:
    buf = _gbuffer(1, 2, 3, 2, per_pixel_eye=False)
    names = [k for k in INPUTS if buf[k] is not None]

    def fn(*leaves: torch.Tensor) -> torch.Tensor:
        return shade_op.shade(**{**buf, **dict(zip(names, leaves))}, light_falloff=True)

    assert torch.autograd.gradcheck(fn, tuple(buf[k] for k in names), eps=1e-6, atol=1e-6)


def test_fused_float32_within_float32_rounding() -> None:
    """float32: the fused op (float64 inside) is nearer the float64 result than the
    float32 reference is, or within 1e-6 of the norm."""
    buf32 = _gbuffer(2, 16, 16, 3, dtype=torch.float32)
    buf64 = {k: (v.detach().double().requires_grad_(v.requires_grad)
                 if isinstance(v, torch.Tensor) else v) for k, v in buf32.items()}
    exact, exact_g = _run(reference.shade, buf64)
    ref, ref_g = _run(reference.shade, buf32)
    got, got_g = _run(shade_op.shade, buf32)
    assert got.dtype == torch.float32
    for name, a, b, c in [("colour", got, ref, exact)] + [(k, got_g[k], ref_g[k], exact_g[k])
                                                          for k in exact_g]:
        err = float(torch.linalg.vector_norm(a.double() - c))
        assert err <= float(torch.linalg.vector_norm(b.double() - c)) \
            + 1e-6 * float(torch.linalg.vector_norm(c)), name


def test_both_cpu_loops_share_one_compiled_shade_pixel(tmp_path) -> None:
    """The forward and backward loops call shade_pixel with an int64 pixel index:
    one of them gave numba's parallel loop index (uint64) and compiled a second
    copy, about 4 s of every first run on a 2-core machine. In a process of its
    own with an empty numba cache (loops loaded from the cache compile nothing)."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, numba, torch\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_shade_fused import _gbuffer, _run\n"
        "from difflod.render import shade_op\n"
        "from difflod.render.backends.cpu_shade import shade_pixel\n"
        "_run(shade_op.shade, _gbuffer(1, 4, 4, 2, dtype=torch.float32))\n"
        "print('SIGS', [str(sig[0]) for sig in shade_pixel.signatures])\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SIGS ['int64']" in out.stdout, out.stdout


def test_reference_runs_where_the_kernel_does_not_serve() -> None:
    buf = _gbuffer(1, 4, 4, 4)
    assert _ran_fused(shade_op.shade(**buf))
    assert not _ran_fused(shade_op.shade(**buf, backend="torch"))
    eye = buf["view_pos"].clone().requires_grad_(True)
    out = shade_op.shade(**{**buf, "view_pos": eye})
    assert not _ran_fused(out)  # a gradient to the eye is asked: the reference gives it
    out.sum().backward()
    assert eye.grad is not None and float(eye.grad.abs().sum()) > 0
    torch.testing.assert_close(out.detach(), shade_op.shade(**buf).detach())
    assert not _ran_fused(shade_op.shade(**{**buf, "light_power": torch.tensor([[2.0]])}))


def test_bad_and_odd_arguments_as_the_reference() -> None:
    buf = _gbuffer(1, 4, 4, 5)
    with pytest.raises(ValueError, match="gb_ks must be"):
        shade_op.shade(**{**buf, "gb_ks": buf["gb_ks"][..., :2]})
    with pytest.raises(ValueError, match="view_pos must be"):
        shade_op.shade(**{**buf, "view_pos": torch.zeros(3, 3, dtype=torch.float64)})
    with pytest.raises(ValueError, match="gb_tangent is required"):
        shade_op.shade(**{**buf, "gb_tangent": None})
    odd = {**buf, "light_power": torch.ones(3, dtype=torch.float64)}  # not one per image
    torch.testing.assert_close(shade_op.shade(**odd), reference.shade(**odd))
    empty = _gbuffer(1, 0, 4, 5)
    assert shade_op.shade(**empty).shape == (1, 0, 4, 3)


def test_kernel_constants_are_the_reference_ones() -> None:
    import inspect

    from difflod.render.backends import cpu_shade as px
    from difflod.scene import light
    from difflod.shading import bsdf

    assert px.EPS_COS == bsdf.SPECULAR_EPS
    assert px.DIELECTRIC_F0 == bsdf.DIELECTRIC_F0
    assert px.NORMAL_THRESHOLD == reference.NORMAL_THRESHOLD
    assert px.EPS_NORM == inspect.signature(bsdf.safe_normalize).parameters["eps"].default
    at = torch.zeros(1, 3, dtype=torch.float64)  # light on the point: the clamp decides
    assert float(light.light_scale(at, at, 1.0, falloff=True)) == 1.0 / px.EPS_DIST


# ----------------------------------------------------------------------------- cuda kernels

_SIM_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from simulator import count_launches
from test_shade_fused import _gbuffer, _run
from difflod.render import shade_op
from difflod.render.backends import cuda_shade as K
from difflod.shading import shade as reference

launches = count_launches(K)

def fused(**kw):
    return shade_op.fused(K, **kw)

bad = []
for nmap, ke, falloff, eye in [(True, True, False, False), (True, False, True, True),
                               (False, True, True, False), (False, False, False, True)]:
    buf = _gbuffer(2, 3, 5, 1, nmap=nmap, ke=ke, per_pixel_eye=eye)
    want, want_g = _run(reference.shade, buf, light_falloff=falloff, normal_scale=0.7)
    got, got_g = _run(fused, buf, light_falloff=falloff, normal_scale=0.7)
    if not torch.allclose(got, want, rtol=1e-10, atol=1e-10):
        bad.append(("colour", nmap, ke, falloff, eye))
    for k in want_g:
        if not torch.allclose(got_g[k], want_g[k], rtol=1e-9, atol=1e-9):
            bad.append((k, nmap, ke, falloff, eye))
buf = _gbuffer(1, 2, 3, 4, dtype=torch.float32)
out, grads = _run(fused, buf)
if out.dtype != torch.float32 or not all(torch.isfinite(g).all() for g in grads.values()):
    bad.append("float32")
print("BAD", bad)
print("LAUNCHES", launches[-2:])
"""


def test_cuda_kernels_match_reference_in_numba_simulator(run_simulated) -> None:
    """The numba-cuda kernels, run by numba's CUDA simulator on CPU tensors, give the
    reference's colours and gradients, one launch each way."""
    stdout = run_simulated(_SIM_SCRIPT.format(tests=str(Path(__file__).parent)))
    assert "BAD []" in stdout, stdout[-3000:]
    line = [ln for ln in stdout.splitlines() if ln.startswith("LAUNCHES")]
    assert ast.literal_eval(line[0][len("LAUNCHES"):]) == [
        ("_forward_kernel", 12, 6), ("_backward_kernel", 19, 6)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_reference_on_gpu(cuda: torch.device, dtype: torch.dtype) -> None:
    """On the device, through shade_op.shade's own dispatch (backend auto): 4 views
    of 64 x 48 pixels, normal map and emission. float64: colours and gradients as
    the reference's; float32: as the CPU kernel's on the same float32 inputs (both
    compute in float64 inside, so they differ by rounding only)."""
    buf = _gbuffer(4, 64, 48, 7, dtype=dtype)
    want, want_g = _run(reference.shade if dtype == torch.float64 else shade_op.shade, buf,
                        light_falloff=True)
    on_gpu = {k: (v.detach().to(cuda).requires_grad_(v.requires_grad)
                  if isinstance(v, torch.Tensor) else v) for k, v in buf.items()}
    assert _ran_fused(shade_op.shade(**on_gpu))
    got, got_g = _run(shade_op.shade, on_gpu, light_falloff=True)
    # float64: the CPU kernel meets the reference at 1e-10 / 1e-9; the GPU may
    # contract products into FMAs and round sqrt and division by libdevice, which
    # specular peaks amplify (D ~ 1/(pi a^2) at a^2 = 4e-5), so both are held to
    # the CPU's gradient bound, 1e-9. float32: numba keeps a product of two float32 inputs in float32 (the
    # squared lengths, the dot products of inputs), which the GPU may contract into
    # FMAs: float32 rounding (6e-8) times the specular peaks' amplification (up to
    # ~1e3), relative to the largest value; a wrong term would be off by O(1).
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(got.cpu(), want, rtol=tol, atol=tol)
    for k in want_g:
        scale = max(float(want_g[k].abs().max()), 1.0)
        torch.testing.assert_close(got_g[k].cpu(), want_g[k], rtol=tol, atol=tol * scale, msg=k)
