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
"""

from __future__ import annotations

import torch

__all__ = ["LOSSES", "image_loss", "linear_to_srgb", "tonemap_log_srgb"]

LOSSES = ("logl1", "logl2", "mse", "smape", "relativel2")


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer curve applied elementwise (inputs >= 0 expected)."""
    return torch.where(x > 0.0031308,
                       torch.pow(torch.clamp(x, min=0.0031308), 1.0 / 2.4) * 1.055 - 0.055,
                       12.92 * x)


def tonemap_log_srgb(x: torch.Tensor) -> torch.Tensor:
    """nvdiffmodeling's loss tonemapper: srgb(log(clamp(x, 0, 65535) + 1))."""
    return linear_to_srgb(torch.log(torch.clamp(x, min=0.0, max=65535.0) + 1.0))


def image_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "logl1") -> torch.Tensor:
    """Scalar loss between two linear images of the same shape (e.g. `[B,H,W,3]`).

    Raises:
        ValueError: unknown kind (listing LOSSES), or shapes / devices differ.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError("pred and target must be torch tensors")  # noqa: TRY004
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "must have the same shape")
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device}, target on {target.device}")
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
