"""shade(compiled=True) against the eager shader: values and gradients, over
pixel counts that change from call to call (as the renderer's covered pixels
do), without recompiling per count.

On the CPU the graph goes through torch.compile with the "aot_eager" backend
(the same capture, forward/backward split and dynamic shapes as Inductor, with
no code generation, so no compiler is needed); on a GPU through Inductor."""

from __future__ import annotations

import pytest
import torch

from difflod.shading import compiled as compilation
from difflod.shading.shade import shade, shade_core


def _gbuffer(p: int, seed: int, device: torch.device, normal_map: bool,
             emissive: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
        t = torch.rand(*shape, generator=g) * (hi - lo) + lo
        return t.to(device).requires_grad_(True)

    tangent = torch.cat([torch.rand(p, 1, 1, 3, generator=g) * 2 - 1,
                         torch.where(torch.rand(p, 1, 1, 1, generator=g) < 0.5, -1.0, 1.0)], -1)
    return {
        "gb_pos": r(p, 1, 1, 3, lo=-0.5, hi=0.5), "gb_geom_normal": r(p, 1, 1, 3),
        "gb_normal": r(p, 1, 1, 3),
        "gb_tangent": tangent.to(device).requires_grad_(True) if normal_map else None,
        "gb_kd": r(p, 1, 1, 3, lo=0.0), "gb_ks": r(p, 1, 1, 3, lo=0.0),
        "gb_nmap": r(p, 1, 1, 3) if normal_map else None,
        "gb_ke": r(p, 1, 1, 3, lo=0.0, hi=2.0) if emissive else None,
        "view_pos": (torch.rand(p, 3, generator=g) * 6 - 3).to(device),
        "light_pos": (torch.rand(p, 3, generator=g) * 6 - 3).to(device),
        "light_power": (torch.rand(p, generator=g) * 4 + 1).to(device),
    }


def _shade_and_grads(buf: dict, compiled: bool) -> tuple[torch.Tensor, list]:
    leaves = [v for v in buf.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    for t in leaves:
        t.grad = None
    out = shade(**buf, min_roughness=0.08, compiled=compiled)
    (out * torch.linspace(0.5, 1.5, out.numel(), device=out.device).reshape(out.shape)) \
        .sum().backward()
    return out.detach(), [t.grad.clone() for t in leaves]


@pytest.mark.parametrize(("normal_map", "emissive"), [(False, False), (True, True)])
def test_compiled_shading_matches_eager_over_changing_pixel_counts(normal_map: bool,
                                                                   emissive: bool,
                                                                   aot_eager: None) -> None:
    import torch._dynamo

    frames = torch._dynamo.utils.counters["stats"]
    frames.clear()
    for i, p in enumerate((37, 50, 91)):
        buf = _gbuffer(p, i, torch.device("cpu"), normal_map, emissive)
        want, want_g = _shade_and_grads(buf, False)
        got, got_g = _shade_and_grads(buf, True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert len(got_g) == len(want_g) >= (6 if emissive else 5)
        for a, b in zip(got_g, want_g):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # dynamic shapes: the first count compiles, later counts reuse it (at most
    # one recompile, when dynamo first turns the size symbolic)
    assert frames["unique_graphs"] <= 2


def test_shade_compiled_flag_goes_through_shading_compiled(monkeypatch) -> None:
    """shade(compiled=True) runs shade_core through shading.compiled; False does not."""
    calls = []

    def fake_compiled(fn):
        assert fn is shade_core
        calls.append(fn)
        return fn

    monkeypatch.setattr(compilation, "compiled", fake_compiled)
    buf = _gbuffer(8, 0, torch.device("cpu"), True)
    want = shade(**buf)
    assert calls == []
    got = shade(**buf, compiled=True)
    assert calls == [shade_core]
    torch.testing.assert_close(got, want)


def _double(buf: dict) -> dict:
    """The same G-buffer in float64 (leaves again, with their requires_grad)."""
    return {k: v.detach().double().requires_grad_(v.requires_grad)
            if isinstance(v, torch.Tensor) else v for k, v in buf.items()}


def _assert_as_accurate(name: str, got: torch.Tensor, eager: torch.Tensor,
                        exact: torch.Tensor) -> None:
    """got (compiled, float32) is about as close to the float64 result as the
    float32 eager shader is: its error's norm within 4x eager's, or within
    1e-6 of the result's norm. Specular peaks (D ~ 1 / (pi alpha^2) at
    alpha^2 = 4e-5), grazing angles and gradients summed from large terms
    amplify rounding, and Inductor's fused kernels (FMA, another order) round
    differently from eager's, so a fixed tolerance around eager's float32
    values cannot tell a rounding difference from a bug; the error norms can."""
    exact = exact.to(got.device)
    err_got = float(torch.linalg.vector_norm(got.double() - exact))
    err_eager = float(torch.linalg.vector_norm(eager.double() - exact))
    scale = float(torch.linalg.vector_norm(exact))
    assert err_got <= 4.0 * err_eager + 1e-6 * scale, (
        f"{name}: error {err_got:.3g} against float64, eager float32's {err_eager:.3g} "
        f"(norm {scale:.3g})")


def test_inductor_shading_on_gpu_matches_eager(cuda: torch.device) -> None:
    """The trainer's GPU path: Inductor's kernels as accurate as the eager shader,
    values and gradients, at a first pixel count and a second (the recompile)."""
    for i, p in enumerate((1000, 4321)):
        buf = _gbuffer(p, i, cuda, True)
        want, want_g = _shade_and_grads(buf, False)
        got, got_g = _shade_and_grads(buf, True)
        exact, exact_g = _shade_and_grads(_double(buf), False)
        _assert_as_accurate(f"colour at {p} pixels", got, want, exact)
        assert len(got_g) == len(want_g) == len(exact_g) == 8
        for k, (a, b, c) in enumerate(zip(got_g, want_g, exact_g)):
            _assert_as_accurate(f"gradient {k} at {p} pixels", a, b, c)
