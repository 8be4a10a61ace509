"""The numba texture path (backend "cpu") against the plain-torch reference ("torch")."""

from __future__ import annotations

import zlib

import pytest
import torch

from difflod.render.texture import texture


def _inputs(seed, tb, h, w, c, b=2, oh=5, ow=7, dtype=torch.float32, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    tex = torch.rand((tb, h, w, c) if tb else (h, w, c), generator=g, dtype=dtype)
    uv = (torch.rand(b, oh, ow, 2, generator=g, dtype=dtype) * 1.6 - 0.3)
    uv_da = (torch.randn(b, oh, ow, 4, generator=g, dtype=dtype) * 0.05 * spread)
    return tex, uv, uv_da


def _run(backend, tex, uv, uv_da, **kw):
    tex = tex.clone().requires_grad_(True)
    uv = uv.clone().requires_grad_(True)
    uv_da = uv_da.clone().requires_grad_(True)
    out = texture(tex, uv, uv_da if kw.get("filter_mode", "").startswith("linear-mip") else None,
                  backend=backend, **kw)
    g = torch.Generator().manual_seed(7)
    w = torch.randn(out.shape, generator=g, dtype=out.dtype)
    (out * w).sum().backward()
    return out.detach(), tex.grad, uv.grad, uv_da.grad


@pytest.mark.parametrize("filter_mode", ["linear", "linear-mipmap-nearest",
                                         "linear-mipmap-linear"])
@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
@pytest.mark.parametrize("shape", [(0, 16, 8, 3), (2, 8, 8, 1), (0, 12, 10, 2), (1, 1, 4, 4)])
def test_cpu_matches_torch_outputs_and_gradients(filter_mode, boundary, shape):
    tex, uv, uv_da = _inputs(zlib.crc32(repr((filter_mode, boundary, shape)).encode()), *shape)
    ref = _run("torch", tex, uv, uv_da, filter_mode=filter_mode, boundary_mode=boundary)
    fast = _run("cpu", tex, uv, uv_da, filter_mode=filter_mode, boundary_mode=boundary)
    for name, a, b in zip(("out", "g_tex", "g_uv", "g_uv_da"), ref, fast):
        if a is None:
            assert b is None or not b.abs().any(), name
            continue
        assert b is not None, name
        scale = a.abs().max().clamp(min=1.0)
        assert (a - b).abs().max() <= 2e-5 * scale, (name, (a - b).abs().max())


def test_cpu_matches_torch_with_max_mip_level_and_custom_mips():
    tex, uv, uv_da = _inputs(3, 0, 32, 16, 3, spread=4.0)
    for kw in ({"max_mip_level": 2}, {"mip": [tex, tex[::2, ::2] * 0.5]}):
        ref = _run("torch", tex, uv, uv_da, filter_mode="linear-mipmap-linear", **kw)
        fast = _run("cpu", tex, uv, uv_da, filter_mode="linear-mipmap-linear", **kw)
        for a, b in zip(ref, fast):
            assert torch.allclose(a, b, rtol=1e-5, atol=2e-5)


def test_cpu_large_texture_many_pixels_matches_torch():
    # more pixels than one backward chunk, so the per-thread buffers are summed
    tex, uv, uv_da = _inputs(11, 0, 64, 64, 3, b=1, oh=96, ow=96)
    ref = _run("torch", tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    fast = _run("cpu", tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    for a, b in zip(ref, fast):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cpu_backward_is_deterministic():
    tex, uv, uv_da = _inputs(5, 0, 32, 32, 3, b=1, oh=80, ow=80)
    a = _run("cpu", tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    b = _run("cpu", tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("boundary", ["wrap", "zero"])
def test_cpu_gradcheck_float64(boundary):
    tex, uv, uv_da = _inputs(2, 0, 4, 4, 2, b=1, oh=2, ow=3, dtype=torch.float64, spread=8.0)
    # keep samples away from texel centres/edges where the bilinear weights kink
    uv = (torch.floor(uv * 8) + 0.3) / 8

    def f(t, u, d):
        return texture(t, u, d, filter_mode="linear-mipmap-linear", boundary_mode=boundary,
                       backend="cpu")

    inputs = (tex.requires_grad_(True), uv.requires_grad_(True), uv_da.requires_grad_(True))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)


def test_cpu_is_the_default_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv("DIFFLOD_BACKEND", raising=False)
    tex, uv, uv_da = _inputs(4, 0, 8, 8, 3)
    a = texture(tex, uv, uv_da)
    b = texture(tex, uv, uv_da, backend="cpu")
    assert torch.equal(a, b)
    monkeypatch.setenv("DIFFLOD_BACKEND", "torch")
    c = texture(tex, uv, uv_da)
    assert torch.equal(c, texture(tex, uv, uv_da, backend="torch"))
