"""texture / texture_mips: hand-computed samples, boundaries, mip-maps, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from difflod.render.texture import texture, texture_mips

# 3 rows x 4 columns, one channel: texel (i, j) = 4 j + i
TEX = torch.arange(12.0).reshape(3, 4, 1)


def _uv(points, dtype=torch.float32):
    return torch.tensor(points, dtype=dtype).reshape(1, 1, -1, 2)


def _centre(i, j, w=4, h=3):
    return ((i + 0.5) / w, (j + 0.5) / h)


def test_linear_and_nearest_at_centres_and_between():
    pts = [_centre(0, 0), _centre(3, 2), _centre(1, 1)]
    for mode in ("linear", "nearest"):
        out = texture(TEX, _uv(pts), filter_mode=mode).flatten()
        assert torch.allclose(out, torch.tensor([0.0, 11.0, 5.0])), mode
    # halfway between texel (1,1) and (2,1), and a quarter towards row 2
    u = 2.0 / 4
    v = (1.5 + 0.25) / 3
    out = texture(TEX, _uv([(u, v)]), filter_mode="linear").flatten()
    assert torch.allclose(out, torch.tensor([0.75 * 5.5 + 0.25 * 9.5]))
    # nearest picks the texel containing the point
    out = texture(TEX, _uv([(0.49, 0.34)]), filter_mode="nearest").flatten()
    assert torch.allclose(out, torch.tensor([1.0 + 4.0]))
    # auto without uv_da is bilinear
    assert torch.allclose(texture(TEX, _uv([(u, v)])), texture(TEX, _uv([(u, v)]),
                                                                filter_mode="linear"))


@pytest.mark.parametrize("mode, ref", [
    ("wrap", [(7 + 4) / 2, (9.5 + 1.5) / 2, (11 + 8) / 2]),
    ("clamp", [4.0, 1.5, 11.0]),
    ("zero", [4 / 2, 1.5 / 2, 11 / 2]),
])
def test_boundary_modes_linear(mode, ref):
    # (0, 0.5): row 1, half way between column -1 and column 0;
    # (0.5, 0): columns 1-2 (1.5 in row 0), half way between row -1 and row 0;
    # (1, 5/6): row 2, half way between column 3 and column 4
    pts = [(0.0, 0.5), (0.5, 0.0), (1.0, 5.0 / 6.0)]
    out = texture(TEX, _uv(pts), filter_mode="linear", boundary_mode=mode).flatten()
    assert torch.allclose(out, torch.tensor(ref))


@pytest.mark.parametrize("mode", ["wrap", "clamp", "zero"])
def test_boundary_modes_nearest(mode):
    pts = [(-0.1, 0.5), (1.2, 0.5)]
    out = texture(TEX, _uv(pts), filter_mode="nearest", boundary_mode=mode).flatten()
    ref = {"wrap": [7.0, 4.0], "clamp": [4.0, 7.0], "zero": [0.0, 0.0]}[mode]
    assert torch.allclose(out, torch.tensor(ref))


def test_mips_shapes_constant_and_mean():
    const = torch.full((6, 10, 3), 0.25)
    levels = texture_mips(const)
    assert [tuple(m.shape[:2]) for m in levels] == [(6, 10), (3, 5), (1, 2), (1, 1)]
    for m in levels:
        assert torch.allclose(m, torch.full_like(m, 0.25))
    ramp = torch.rand(5, 7, 2, generator=torch.Generator().manual_seed(0))
    for m in texture_mips(ramp):
        assert torch.allclose(m.mean(dim=(0, 1)), ramp.mean(dim=(0, 1)), atol=1e-6)
    # power of two: plain 2x2 box filter
    t = torch.rand(4, 4, 1)
    lvl1 = texture_mips(t, max_mip_level=1)
    assert len(lvl1) == 2
    assert torch.allclose(lvl1[1][0, 0, 0], t[:2, :2, 0].mean())
    batched = texture_mips(torch.rand(2, 8, 8, 3))
    assert [tuple(m.shape) for m in batched][-1] == (2, 1, 1, 3)


def test_mips_differentiable():
    t = torch.rand(5, 3, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: tuple(texture_mips(x)), (t,))


def _checker(n=64, cell=1):
    ij = torch.arange(n)
    c = ((ij.unsqueeze(1) // cell + ij.unsqueeze(0) // cell) % 2).float()
    return c.unsqueeze(-1)


def test_minified_checkerboard_is_grey_with_mipmaps():
    tex = _checker(64)
    # 20x20 screen pixels covering the whole texture: 3.2 texels per pixel
    n = 20
    c = (torch.arange(n) + 0.37) / n
    uv = torch.stack(torch.meshgrid(c, c, indexing="xy"), dim=-1).unsqueeze(0)
    uv_da = torch.zeros(1, n, n, 4)
    uv_da[..., 0] = 1.0 / n
    uv_da[..., 3] = 1.0 / n
    # without mip-maps the samples alias: far from grey
    assert texture(tex, uv, filter_mode="nearest").std() > 0.4
    assert texture(tex, uv, filter_mode="linear").std() > 0.05
    for mode in ("linear-mipmap-linear", "linear-mipmap-nearest", "auto"):
        out = texture(tex, uv, uv_da, filter_mode=mode)
        assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-5), mode


def test_lod_selection_and_clamp():
    tex = torch.zeros(8, 8, 1)
    mip = [tex] + [torch.full((8 >> k, 8 >> k, 1), float(k)) for k in range(1, 4)]
    uv = torch.full((1, 1, 4, 2), 0.3)
    da = torch.zeros(1, 1, 4, 4)
    # footprints of 0.5, 2, 2*sqrt(2) (level 1.5) and 1000 texels (clamped to 3)
    for k, fp in enumerate((0.5, 2.0, 2.0 * math.sqrt(2.0), 1000.0)):
        da[0, 0, k, 1] = fp / 8  # du/dY: the larger axis
        da[0, 0, k, 2] = 0.1 / 8
    out = texture(tex, uv, da, mip=mip).flatten()
    assert torch.allclose(out, torch.tensor([0.0, 1.0, 1.5, 3.0]), atol=1e-5)
    near = texture(tex, uv, da, mip=mip, filter_mode="linear-mipmap-nearest").flatten()
    assert torch.allclose(near, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    capped = texture(tex, uv, da, mip=mip, max_mip_level=2).flatten()
    assert torch.allclose(capped, torch.tensor([0.0, 1.0, 1.5, 2.0]), atol=1e-5)


def test_custom_mip_stack_is_used():
    tex = _checker(16)
    own = texture_mips(tex)
    custom = [tex] + [torch.full_like(m, 0.9) for m in own[1:]]
    uv = torch.full((1, 2, 2, 2), 0.4)
    da = torch.zeros(1, 2, 2, 4)
    da[..., 0] = da[..., 3] = 4.0 / 16  # level 2
    assert torch.allclose(texture(tex, uv, da, mip=custom), torch.full((1, 2, 2, 1), 0.9))
    assert torch.allclose(texture(tex, uv, da), torch.full((1, 2, 2, 1), 0.5))


def test_batched_texture():
    t = torch.stack([TEX, TEX + 100])
    uv = _uv([_centre(1, 2)]).expand(2, 1, 1, 2)
    out = texture(t, uv).flatten()
    assert torch.allclose(out, torch.tensor([9.0, 109.0]))


def _inside_uv(n, sizes, gen, dtype=torch.float64):
    """Random UVs whose bilinear fractions stay away from 0/1 on every level."""
    pts = []
    while len(pts) < n:
        p = torch.rand(2, generator=gen, dtype=dtype) * 1.6 - 0.3
        ok = True
        for h, w in sizes:
            for c, s in ((p[0], w), (p[1], h)):
                f = float(c * s - 0.5) % 1.0
                ok &= 0.1 < f < 0.9
        if ok:
            pts.append(p)
    return torch.stack(pts)


def _uv_da(lods, w, h, dtype=torch.float64):
    """uv_da giving these LODs: X footprint 2^lod texels, Y footprint a quarter of it."""
    s = torch.exp2(torch.as_tensor(lods, dtype=dtype))
    da = torch.zeros(len(lods), 4, dtype=dtype)
    da[:, 0] = s / w * 0.8
    da[:, 2] = s / h * 0.6
    da[:, 1] = s / w * 0.1
    da[:, 3] = s / h * 0.2
    return da


@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "linear-mipmap-nearest",
                                  "linear-mipmap-linear"])
def test_gradcheck(mode, boundary):
    gen = torch.Generator().manual_seed(3)
    h, w = 4, 8
    tex = torch.rand(2, h, w, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    sizes = [(h, w), (2, 4), (1, 2), (1, 1)]
    n = 6
    uv = _inside_uv(2 * n, sizes, gen).reshape(2, 1, n, 2).requires_grad_(True)
    if mode == "nearest":
        assert torch.autograd.gradcheck(
            lambda t: texture(t, uv.detach(), filter_mode=mode, boundary_mode=boundary), (tex,))
        return
    if mode == "linear":
        assert torch.autograd.gradcheck(
            lambda t, c: texture(t, c, filter_mode=mode, boundary_mode=boundary), (tex, uv))
        return
    frac = (0.3, 0.7) if mode == "linear-mipmap-linear" else (0.15, 0.3)
    lods = [lo + f for lo in (0, 1, 2) for f in frac][:n] * 2
    da = _uv_da(lods, w, h).reshape(2, 1, n, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t, c, d: texture(t, c, d, filter_mode=mode, boundary_mode=boundary),
        (tex, uv, da))


def test_gradcheck_custom_mip_levels():
    gen = torch.Generator().manual_seed(4)
    tex = torch.rand(4, 4, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    l1 = torch.rand(2, 2, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    l2 = torch.rand(1, 1, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = _inside_uv(4, [(4, 4), (2, 2), (1, 1)], gen).reshape(1, 1, 4, 2)
    da = _uv_da([0.4, 0.6, 1.3, 1.7], 4, 4).reshape(1, 1, 4, 4)
    assert torch.autograd.gradcheck(
        lambda t, a, b: texture(t, uv, da, mip=[t, a, b]), (tex, l1, l2))


@pytest.mark.parametrize("kwargs, match", [
    ({"tex": torch.zeros(4, 4)}, "tex"),
    ({"tex": torch.zeros(3, 4, 4, 1)}, "batch"),
    ({"uv": torch.zeros(1, 2, 2, 3)}, "uv"),
    ({"filter_mode": "cubic"}, "filter_mode"),
    ({"boundary_mode": "cube"}, "boundary_mode"),
    ({"filter_mode": "linear-mipmap-linear"}, "uv_da"),
    ({"uv_da": torch.zeros(1, 2, 2, 2)}, "uv_da"),
    ({"uv_da": torch.zeros(1, 2, 2, 4), "mip": [torch.zeros(2, 2, 1)]}, "mip"),
    ({"uv_da": torch.zeros(1, 2, 2, 4), "mip": [torch.zeros(4, 4, 1), torch.zeros(2, 2, 3)]},
     "mip"),
    ({"max_mip_level": -1}, "max_mip_level"),
])
def test_validation(kwargs, match):
    args = {"tex": torch.zeros(4, 4, 1), "uv": torch.zeros(1, 2, 2, 2)}
    args.update(kwargs)
    tex, uv = args.pop("tex"), args.pop("uv")
    with pytest.raises(ValueError, match=match):
        texture(tex, uv, **args)
