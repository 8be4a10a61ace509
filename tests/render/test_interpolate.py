"""interpolate: exact values, batching, derivatives, gradients, validation."""

from __future__ import annotations

import pytest
import torch

from difflod.render.interpolate import interpolate


def _rast(dtype=torch.float32):
    """A 1x2x2 raster by hand: three covered pixels, one empty."""
    r = torch.zeros(1, 2, 2, 4, dtype=dtype)
    r[0, 0, 0] = torch.tensor([0.2, 0.3, 0.5, 1.0])   # triangle 0
    r[0, 0, 1] = torch.tensor([0.0, 0.0, 0.5, 2.0])   # triangle 1 at its vertex 0
    r[0, 1, 1] = torch.tensor([0.5, 0.5, 0.5, 2.0])   # triangle 1, mid of edge 1-2
    return r


TRIS = torch.tensor([[0, 1, 2], [3, 2, 1]], dtype=torch.int32)
ATTR = torch.tensor([[0.0, 1.0], [10.0, 2.0], [20.0, 3.0], [30.0, 4.0]])


def test_values_by_hand():
    out, da = interpolate(ATTR, _rast(), TRIS)
    assert da is None
    assert out.shape == (1, 2, 2, 2)
    # pixel (0,0): 0.5*a0 + 0.2*a1 + 0.3*a2
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.5 * 0 + 0.2 * 10 + 0.3 * 20,
                                                      0.5 * 1 + 0.2 * 2 + 0.3 * 3]))
    assert torch.allclose(out[0, 0, 1], ATTR[3])
    assert torch.allclose(out[0, 1, 1], 0.5 * (ATTR[2] + ATTR[1]))
    assert torch.equal(out[0, 1, 0], torch.zeros(2))


def test_batched_attr_and_broadcast():
    rast = torch.cat([_rast(), _rast()])
    attr = torch.stack([ATTR, ATTR * 2])
    out, _ = interpolate(attr, rast, TRIS)
    ref, _ = interpolate(ATTR, rast[:1], TRIS)
    assert torch.allclose(out[0], ref[0]) and torch.allclose(out[1], 2 * ref[0])
    out1, _ = interpolate(ATTR.unsqueeze(0), rast, TRIS)
    assert torch.allclose(out1[1], ref[0])


def test_screen_derivatives_chain_rule():
    rast = _rast()
    db = torch.zeros(1, 2, 2, 4)
    db[..., 0] = 0.1  # du/dX
    db[..., 3] = 0.2  # dv/dY
    _, da = interpolate(ATTR, rast, TRIS, rast_db=db, diff_attrs=[1])
    assert da.shape == (1, 2, 2, 2)
    # triangle 0, channel 1: a1-a0 = 1, a2-a0 = 2 -> d/dX = 0.1, d/dY = 0.4
    assert torch.allclose(da[0, 0, 0], torch.tensor([0.1, 0.4]))
    # triangle 1 = (3,2,1): a1-a0 = -1, a2-a0 = -2
    assert torch.allclose(da[0, 0, 1], torch.tensor([-0.1, -0.4]))
    assert torch.equal(da[0, 1, 0], torch.zeros(2))
    _, da_all = interpolate(ATTR, rast, TRIS, rast_db=db, diff_attrs="all")
    assert da_all.shape == (1, 2, 2, 4)
    assert torch.allclose(da_all[..., 2:], da)


def test_gradcheck_attr_and_barycentrics():
    torch.manual_seed(0)
    rast = _rast(torch.float64)
    attr = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    uv = rast[..., :2].clone().requires_grad_(True)
    rest = rast[..., 2:]
    db = torch.randn(1, 2, 2, 4, dtype=torch.float64, requires_grad=True)

    def f(a, b, d):
        r = torch.cat([b, rest], dim=-1)
        out, da = interpolate(a, r, TRIS, rast_db=d, diff_attrs=[0, 2])
        return out, da

    assert torch.autograd.gradcheck(f, (attr, uv, db))


def test_gradcheck_batched_attr():
    torch.manual_seed(1)
    rast = torch.cat([_rast(torch.float64)] * 2)
    attr = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: interpolate(a, rast, TRIS)[0], (attr,))


def test_empty_pixels_get_no_gradient():
    attr = ATTR.clone().requires_grad_(True)
    rast = torch.zeros(1, 2, 2, 4)
    out, _ = interpolate(attr, rast, TRIS)
    out.sum().backward()
    assert torch.equal(attr.grad, torch.zeros_like(attr))


@pytest.mark.parametrize("bad, match", [
    ({"attr": torch.zeros(4)}, "attr"),
    ({"attr": torch.zeros(3, 4, 2)}, "attr"),
    ({"rast": torch.zeros(1, 2, 2, 3)}, "rast"),
    ({"tris": torch.zeros(2, 3)}, "tris"),
    ({"tris": torch.tensor([[0, 1, 9]])}, "tris"),
    ({"diff_attrs": [0]}, "rast_db"),
    ({"diff_attrs": [5], "rast_db": torch.zeros(1, 2, 2, 4)}, "diff_attrs"),
    ({"diff_attrs": "some", "rast_db": torch.zeros(1, 2, 2, 4)}, "diff_attrs"),
    ({"rast_db": torch.zeros(1, 2, 2, 2)}, "rast_db"),
])
def test_validation(bad, match):
    args = {"attr": ATTR, "rast": _rast(), "tris": TRIS}
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        interpolate(**args)
