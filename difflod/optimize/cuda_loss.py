"""GPU (numba-cuda) kernel of the tonemapped image loss (losses.py's logl1 and
logl2): one pass over the two images that writes the gradient image(s) and
one partial sum per block, no temporaries.

Why: in plain torch the loss and its gradient image are about a dozen
elementwise passes, each leaving an image-sized temporary; at spot.json's
settings (8 x 512² x 3 float32, 24 MiB an image) their ~220 MiB were live
at a recorded training step's peak memory (1.12 GiB on an H100, torch's
memory history), the largest item. This kernel allocates the gradient image
and a partial sum per block of THREADS pixels' channels. The partial sums
are added by torch (no atomics: the same value every run).

The arithmetic is in the images' dtype (float32 in training), with log1p
for log(x + 1) (it keeps its digits near 0, where float32's log(x + 1) lost
up to 1e-5 relative); the block sums are float64. A first version computed
every element in float64: on an H100 at spot.json's settings it took 0.27 ms
of the recorded step (float64 log and pow are long instruction sequences);
float32 takes 0.11 ms. The torch Function in losses.py (the CPU path) is
held to the same expression, and tests/optimize/test_losses.py holds this
kernel to `reference_loss`, values and gradients, under numba's CUDA
simulator and on a GPU. A NaN in either
image gives a NaN loss and NaN gradients there, as the torch expression
does (the trainer then undoes the step).
"""

from __future__ import annotations

import functools
import math

import torch

from difflod.render.backends.cuda_launch import THREADS, available, blocks, cuda, launch

__all__ = ["available", "tonemapped_loss"]

_SRGB_KNEE = 0.0031308  # as losses.py
_LOG_MAX = 65535.0
# the kernel's constants, handed to it as a small tensor of the images' dtype
# so that its arithmetic stays in that dtype (a Python float literal would make
# numba compute in float64)
_CONSTANTS = (0.0, 1.0, _SRGB_KNEE, 1.0 / 2.4, 1.055, 0.055, 12.92, _LOG_MAX,
              1.055 / 2.4, 1.0 / 2.4 - 1.0, 2.0)


def _tonemap_and_slope(x, k):  # pragma: no cover - compiled for the GPU or the simulator
    """srgb(log(clamp(x, 0, 65535) + 1)) and its derivative as autograd gives
    it (clamp passes the gradient on [0, 65535]; sRGB's knee takes the linear
    branch), in x's dtype; k holds _CONSTANTS in that dtype."""
    zero, one = k[0], k[1]
    c = min(max(x, zero), k[7])
    y = math.log1p(c)
    if y > k[2]:
        tone = math.pow(y, k[3]) * k[4] - k[5]
        slope = k[8] * math.pow(y, k[9])
    else:
        tone = k[6] * y
        slope = k[6]
    if x < zero or x > k[7]:
        slope = zero
    return tone, slope / (c + one)


if cuda is not None:
    import numba

    _element = cuda.jit(device=True)(_tonemap_and_slope)

    @cuda.jit(cache=True)
    def _loss_kernel(pred, target, squared, k, g_pred, g_target, with_target,
                     partial):  # pragma: no cover - compiled for the GPU or the simulator
        sums = cuda.shared.array(THREADS, numba.float64)
        i = cuda.grid(1)
        t = cuda.threadIdx.x
        term = 0.0
        if i < pred.shape[0]:
            p, q = pred[i], target[i]
            if math.isnan(p) or math.isnan(q):  # NaN in: NaN out, as the torch expression
                term = math.nan
                outer = p + q
                sp = sq = k[1]
            else:
                tp, sp = _element(p, k)
                tq, sq = _element(q, k)
                d = tp - tq
                scale = k[11]
                if squared:
                    outer = k[10] * d * scale
                    d = d * d
                else:
                    outer = scale if d > k[0] else (-scale if d < k[0] else k[0])
                    d = abs(d)
                term = float(d)  # the partial sums are float64
            g_pred[i] = outer * sp
            if with_target:
                g_target[i] = -outer * sq
        sums[t] = term
        cuda.syncthreads()
        step = THREADS // 2
        while step > 0:
            if t < step:
                sums[t] += sums[t + step]
            cuda.syncthreads()
            step //= 2
        if t == 0:
            partial[cuda.blockIdx.x] = sums[0]


@functools.lru_cache(maxsize=16)
def _constants(dtype: torch.dtype, device: torch.device, n: int) -> torch.Tensor:
    """_CONSTANTS and the mean's 1/n as a device tensor of `dtype`, made once per
    (dtype, device, pixel count): a recorded step reads it without a host copy."""
    return torch.tensor([*_CONSTANTS, 1.0 / max(n, 1)], dtype=dtype, device=device)


def tonemapped_loss(pred: torch.Tensor, target: torch.Tensor, squared: bool,
                    with_target: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(mean |tm(pred) - tm(target)| or its square, the gradient image to pred,
    the one to target or None unless `with_target`): losses._TonemappedLoss's
    forward, on the images' GPU (or the simulator). The gradients are of the
    mean (they are scaled by the incoming gradient in the backward pass)."""
    p, q = pred.detach().contiguous().view(-1), target.detach().contiguous().view(-1)
    n = p.numel()
    g_pred = torch.empty_like(p)
    # without a target gradient the kernel gets a one-element stand-in (never written)
    g_target = torch.empty_like(q) if with_target else q.new_empty(1)
    partial = torch.empty(blocks(n), dtype=torch.float64, device=p.device)
    with launch(p.device) as run:
        run(_loss_kernel, n, p, q, bool(squared), _constants(p.dtype, p.device, n), g_pred,
            g_target, bool(with_target), partial)
    loss = (partial.sum() / max(n, 1)).to(pred.dtype)
    return (loss, g_pred.view(pred.shape),
            g_target.view(target.shape) if with_target else None)
