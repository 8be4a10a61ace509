"""Tests for difflod.optimize.losses with hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from difflod.optimize.losses import (
    LOSSES,
    image_loss,
    linear_to_srgb,
    reference_loss,
    tonemap_log_srgb,
)


def _srgb(x: float) -> float:
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


PRED = torch.tensor([[[[0.0, 1.0, 3.0]]]])
TARGET = torch.tensor([[[[1.0, 1.0, 0.5]]]])


def test_srgb_curve_values():
    x = torch.tensor([0.0, 0.002, 0.0031308, 0.5, 1.0])
    torch.testing.assert_close(linear_to_srgb(x), torch.tensor([_srgb(float(v)) for v in x]))
    assert float(tonemap_log_srgb(torch.tensor(math.e - 1))) == pytest.approx(1.0, rel=1e-6)
    assert float(tonemap_log_srgb(torch.tensor(-2.0))) == 0.0


def test_hand_computed_values():
    p, t = [0.0, 1.0, 3.0], [1.0, 1.0, 0.5]
    tp = [_srgb(math.log(v + 1)) for v in p]
    tt = [_srgb(math.log(v + 1)) for v in t]
    expected = {
        "logl1": sum(abs(a - b) for a, b in zip(tp, tt)) / 3,
        "logl2": sum((a - b) ** 2 for a, b in zip(tp, tt)) / 3,
        "mse": (1.0 + 0.0 + 6.25) / 3,
        "smape": (1 / 1.01 + 0 + 2.5 / 3.51) / 3,
        "relativel2": (1 / 1.1 + 0 + 6.25 / 9.35) / 3,
    }
    assert set(expected) == set(LOSSES)
    for kind, value in expected.items():
        assert float(image_loss(PRED, TARGET, kind)) == pytest.approx(value, rel=1e-5), kind
    assert float(image_loss(PRED, TARGET)) == pytest.approx(expected["logl1"], rel=1e-5)


def test_zero_for_equal_images_and_gradients_finite():
    x = torch.rand(2, 4, 4, 3) * 5
    for kind in LOSSES:
        assert float(image_loss(x, x.clone(), kind)) == 0.0
        p = torch.zeros(1, 2, 2, 3, requires_grad=True)
        image_loss(p, torch.rand(1, 2, 2, 3), kind).backward()
        assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0


def test_errors():
    with pytest.raises(ValueError, match="logl1"):
        image_loss(PRED, TARGET, "l1")
    with pytest.raises(ValueError, match="same shape"):
        image_loss(PRED, TARGET[..., :2])


@pytest.mark.parametrize("kind", ["logl1", "logl2"])
def test_fused_tonemapped_loss_matches_the_composed_expression(kind: str) -> None:
    """image_loss's Function (it keeps only the two images for the backward
    pass) gives reference_loss's value and gradients, to both images, at
    values on every branch: negative, zero, the sRGB knee, 0..1, HDR, past the clamp."""
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([-1.0, 0.0, math.exp(0.0031308) - 1.0, 1e-4, 0.5, 1.0, 40.0, 7e4])
    pred = torch.cat([special, torch.rand(64, generator=g, dtype=torch.float64) * 3 - 0.5])
    target = torch.cat([special.flip(0), torch.rand(64, generator=g, dtype=torch.float64) * 3])
    pred[3] = target[3] = 0.25  # a zero difference: the L1 subgradient 0
    pred, target = pred.double().reshape(1, 8, 9, 1), target.double().reshape(1, 8, 9, 1)
    grads = []
    for fn in (image_loss, reference_loss):
        p, t = pred.clone().requires_grad_(True), target.clone().requires_grad_(True)
        value = fn(p, t, kind)
        (value * 3.0).backward()
        grads.append((value.detach(), p.grad, t.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    # and by finite differences, away from the kinks
    p = (torch.rand(2, 3, 4, 3, generator=g, dtype=torch.float64) * 2 + 0.01).requires_grad_(True)
    t = (torch.rand(2, 3, 4, 3, generator=g, dtype=torch.float64) * 2 + 0.01).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: image_loss(a, b, kind), (p, t))


def _branch_images(dtype: torch.dtype, knee: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """[2,8,9,3] images whose values fall on every branch of the tonemapper; one
    value's log is `knee` times the sRGB curve's knee (at 1.0 which branch it
    takes can turn on the last bit of a float32 log: GPU and CPU logs differ there)."""
    g = torch.Generator().manual_seed(3)
    special = torch.tensor([-1.0, 0.0, math.exp(knee * 0.0031308) - 1.0, 1e-4, 0.5, 1.0, 40.0,
                            7e4])
    pred = torch.rand(2, 8, 9, 3, generator=g, dtype=torch.float64) * 3 - 0.5
    target = torch.rand(2, 8, 9, 3, generator=g, dtype=torch.float64) * 3
    pred.view(-1)[:8], target.view(-1)[:8] = special, special.flip(0)
    pred.view(-1)[9] = target.view(-1)[9] = 0.25  # a zero difference: the L1 subgradient 0
    return pred.to(dtype), target.to(dtype)


_SIM_SCRIPT = """
import sys, math, torch
sys.path.insert(0, {tests!r})
from test_losses import _branch_images
from difflod.optimize import cuda_loss
from difflod.optimize.losses import reference_loss

bad = []
for dtype in (torch.float32, torch.float64):
    pred, target = _branch_images(dtype, knee=1.001)
    for kind in ("logl1", "logl2"):
        # the kernel computes in the images' dtype: held to the float64 reference
        # rounded to that dtype, float32 with a float32 arithmetic's tolerance
        p = pred.to(torch.float64, copy=True).requires_grad_(True)
        t = target.to(torch.float64, copy=True).requires_grad_(True)
        ref = reference_loss(p, t, kind)
        ref.backward()
        ref, p_grad, t_grad = (x.to(dtype) for x in (ref.detach(), p.grad, t.grad))
        for with_target in (True, False):
            loss, g_p, g_t = cuda_loss.tonemapped_loss(pred, target, kind == "logl2", with_target)
            def close(x, y):  # float32: 2e-6 relative, of the largest element where
                # logl2's difference of two tonemapped values cancels digits
                tol = dict(rtol=2e-6, atol=2e-6 * float(y.abs().max())) \
                    if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-15)
                torch.testing.assert_close(x, y, **tol)
            try:
                close(loss, ref)
                close(g_p, p_grad)
                if with_target:
                    close(g_t, t_grad)
                elif g_t is not None:
                    bad.append("a target gradient nobody asked for")
            except AssertionError as e:
                bad.append((str(dtype), kind, with_target, str(e)[:300]))
pred, target = _branch_images(torch.float32)
pred.view(-1)[5] = float("nan")
loss, g_p, _ = cuda_loss.tonemapped_loss(pred, target, False, False)
if not (math.isnan(float(loss)) and math.isnan(float(g_p.view(-1)[5]))
        and torch.isfinite(g_p.view(-1)[6:]).all()):
    bad.append(("NaN", float(loss)))
print("BAD", bad)
"""


def test_cuda_loss_kernel_matches_reference_in_numba_simulator(run_simulated) -> None:
    """The GPU kernel (cuda_loss), run by numba's CUDA simulator on CPU tensors, gives
    reference_loss's value and gradients on every branch, float32 and float64,
    over two blocks of threads; a NaN pixel makes the loss and its own gradient NaN.
    It computes in the images' dtype: float64 images are held to the reference
    at 1e-12, float32 ones to the float64 reference rounded to float32 at 2e-6
    (relative, and of the largest element: logl2's gradient is the difference
    of two tonemapped values, which float32 rounds to its last bits)."""
    from pathlib import Path

    stdout = run_simulated(_SIM_SCRIPT.format(tests=str(Path(__file__).parent)))
    assert "BAD []" in stdout, stdout[-3000:]


@pytest.mark.parametrize("kind", ["logl1", "logl2"])
def test_image_loss_on_gpu_matches_reference(cuda: torch.device, kind: str) -> None:
    """On a GPU image_loss runs the kernel, whose arithmetic is float32 with
    log1p: on float32 images it gives reference_loss's value and gradients
    computed in float64 from the same images within 2e-6 relative (float32's
    log(x + 1), as the torch expression in float32 has it, is 1e-5 off near
    zero; the knee's value sits just past it, so both logs take the same branch;
    the absolute tolerance, 2e-6 of the largest element, is for logl2, whose
    gradient is a difference of two tonemapped values rounded to float32)."""
    pred, target = _branch_images(torch.float32, knee=1.001)
    grads = []
    for fn, dtype in ((image_loss, torch.float32), (reference_loss, torch.float64)):
        p = pred.to(cuda, dtype).requires_grad_(True)
        t = target.to(cuda, dtype).requires_grad_(True)
        value = fn(p, t, kind)
        (value * 3.0).backward()
        grads.append([x.cpu().float() for x in (value.detach(), p.grad, t.grad)])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6 * float(b.abs().max()))
