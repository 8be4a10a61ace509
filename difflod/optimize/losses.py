"""Image losses between a rendered image and its reference (nvdiffmodeling's).

| kind         | tonemap                          | distance                          |
|--------------|----------------------------------|-----------------------------------|
| "logl1"      | srgb(log(clamp(x, 0, 65535) + 1)) | mean |a - b|                      |
| "logl2"      | same                             | mean (a - b)^2                    |
| "mse"        | none (linear HDR)                | mean (a - b)^2                    |
| "smape"      | none                             | mean |a-b| / (|a| + |b| + 0.01)   |
| "relativel2" | none                             | mean (a-b)^2 / (a^2 + b^2 + 0.1)  |

"srgb" is the sRGB transfer curve (linear below 0.0031308), with its input
clamped before the power so that the gradient is finite everywhere.

"logl1" and "logl2" run as one autograd Function (`_TonemappedLoss`) whose
forward pass also makes the gradient image, so that one image is kept for
the backward pass, which only scales it; autograd of the composed
expression (`reference_loss`, which tests hold the Function to, values and
gradients) keeps about eight image-sized intermediates alive through the
backward pass: at spot.json's settings (8 x 512^2) 0.2 GiB of a recorded
step's 1.1 GiB peak, measured on an H100 (torch's memory history). A first
version kept the two images and recomputed the difference in the backward
pass: its recomputation's temporaries were then the peak's largest item
(72 MiB). On this CPU a step takes the same time either way (bench/train.py
at 256², batch 4: 131-146 ms before, 131-154 after, runs interleaved). On a
GPU the forward pass's own temporaries (about a dozen images) were still the
largest item at the recorded step's peak; there it is one numba-cuda kernel
(cuda_loss.py) that writes the gradient image and nothing else image-sized.
"""

from __future__ import annotations

import torch

__all__ = ["LOSSES", "image_loss", "linear_to_srgb", "reference_loss", "tonemap_log_srgb"]

LOSSES = ("logl1", "logl2", "mse", "smape", "relativel2")
_SRGB_KNEE = 0.0031308  # the sRGB curve is linear below
_LOG_MAX = 65535.0      # the loss tonemapper's clamp


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer curve applied elementwise (inputs >= 0 expected)."""
    return torch.where(x > _SRGB_KNEE,
                       torch.pow(torch.clamp(x, min=_SRGB_KNEE), 1.0 / 2.4) * 1.055 - 0.055,
                       12.92 * x)


def tonemap_log_srgb(x: torch.Tensor) -> torch.Tensor:
    """nvdiffmodeling's loss tonemapper: srgb(log(clamp(x, 0, 65535) + 1))."""
    return linear_to_srgb(torch.log(torch.clamp(x, min=0.0, max=_LOG_MAX) + 1.0))


def _tonemap_slope(x: torch.Tensor) -> torch.Tensor:
    """d tonemap_log_srgb / dx, as autograd gives it for the composed expression
    (clamp passes the gradient on [0, 65535], where picks its branch's)."""
    c = torch.clamp(x, min=0.0, max=_LOG_MAX)
    y = torch.log(c + 1.0)
    inside = ((x >= 0.0) & (x <= _LOG_MAX)).to(x.dtype)
    srgb = torch.where(y > _SRGB_KNEE,
                       (1.055 / 2.4) * torch.pow(torch.clamp(y, min=_SRGB_KNEE), 1.0 / 2.4 - 1.0),
                       12.92)
    return srgb * inside / (c + 1.0)


class _TonemappedLoss(torch.autograd.Function):
    """mean |tm(pred) - tm(target)| (or its square): see the module docstring.
    The forward pass also computes the gradient with respect to each image
    that needs one (elementwise, as autograd of the expression would), so the
    backward pass only scales it."""

    @staticmethod
    def forward(ctx, pred: torch.Tensor, target: torch.Tensor,  # type: ignore[override]
                squared: bool) -> torch.Tensor:
        if pred.is_cuda:
            from difflod.optimize import cuda_loss

            if cuda_loss.available():
                loss, g_pred, g_target = cuda_loss.tonemapped_loss(
                    pred, target, squared, ctx.needs_input_grad[1])
                ctx.save_for_backward(g_pred if ctx.needs_input_grad[0] else None, g_target)
                return loss
        diff = tonemap_log_srgb(pred) - tonemap_log_srgb(target)
        loss = torch.mean(diff * diff) if squared else torch.mean(torch.abs(diff))
        outer = (2.0 * diff if squared else torch.sign(diff)) / diff.numel()
        del diff
        g_pred = outer * _tonemap_slope(pred) if ctx.needs_input_grad[0] else None
        g_target = -outer * _tonemap_slope(target) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(g_pred, g_target)
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        g_pred, g_target = ctx.saved_tensors
        return (None if g_pred is None else g_pred * grad,
                None if g_target is None else g_target * grad, None)


def image_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "logl1") -> torch.Tensor:
    """Scalar loss between two linear images of the same shape (e.g. `[B,H,W,3]`).

    Raises:
        ValueError: unknown kind (listing LOSSES), or shapes / devices differ.
    """
    _check(pred, target, kind)
    if kind in ("logl1", "logl2"):
        return _TonemappedLoss.apply(pred, target, kind == "logl2")
    return reference_loss(pred, target, kind)


def reference_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "logl1") -> torch.Tensor:
    """image_loss as one autograd expression (the reference its Function is held to)."""
    _check(pred, target, kind)
    if kind in ("logl1", "logl2"):
        pred, target = tonemap_log_srgb(pred), tonemap_log_srgb(target)
    diff = pred - target
    if kind == "logl1":
        return torch.mean(torch.abs(diff))
    if kind in ("logl2", "mse"):
        return torch.mean(diff * diff)
    if kind == "smape":
        return torch.mean(torch.abs(diff) / (torch.abs(pred) + torch.abs(target) + 0.01))
    return torch.mean(diff * diff / (pred * pred + target * target + 0.1))


def _check(pred: object, target: object, kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError("pred and target must be torch tensors")  # noqa: TRY004
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "must have the same shape")
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device}, target on {target.device}")
