"""GPU (numba-cuda) kernels of the fused shading op: cpu_shade.py's per-pixel
shading, one thread per pixel, one launch forward and one backward.

Why: on a GPU the plain-torch shader (the reference) is ~500 elementwise
kernels a training step, forward and backward, each a pass over the pixels
and a temporary; the eager step's profile on an H100 showed this chain as
most of the device's ~2,000 kernels a step. Here the same per-pixel Python
function the CPU kernels run (shade_pixel) is compiled as a CUDA device
function, so both backends share one written-out forward and backward.
Measured on an H100 at spot.json's settings (bench/train.py, 200
iterations): the recorded step 15.4 -> 11.4 ms, eager 32.7 -> 24.8 ms, the
recorded step's peak memory 1.51 -> 1.12 GiB; the two kernels take 0.17 ms
(backward) and less (forward) of the step's 8.1 ms of device time.

The arithmetic is float64 per pixel, as on the CPU. H100 and H200 run
float64 at half their float32 rate; consumer cards at 1/64 of it, where by
its operation count (a few hundred float64 operations a pixel each way) a
step of 2M pixels would still spend well under a millisecond (not
measured). Every pixel's gradients are its own rows: no atomics, so results
do not vary from run to run. Launched through cuda_launch on torch's current
stream (no copies, no host sync; usable inside a recorded CUDA graph).

Under NUMBA_ENABLE_CUDASIM=1 the kernels run on CPU tensors in numba's
simulator; tests/render/test_shade_fused.py checks them that way and, on a
GPU machine, against the reference on the device.
"""

from __future__ import annotations

import torch

from difflod.render.backends.cpu_shade import shade_pixel
from difflod.render.backends.cuda_launch import available, cuda, launch

__all__ = ["available", "backward", "forward"]

if cuda is not None:
    _pixel = cuda.jit(device=True)(shade_pixel.py_func)

    @cuda.jit(cache=True)
    def _forward_kernel(pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l,
                        per_p, flags, min_roughness, normal_scale, out):  # pragma: no cover
        n = cuda.grid(1)
        if n < pos.shape[0]:
            out[n, 0], out[n, 1], out[n, 2] = _pixel(
                n, pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l,
                per_p, flags & 7, min_roughness, normal_scale, out, out, out, out, out, out, out,
                out)

    @cuda.jit(cache=True)
    def _backward_kernel(pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l,
                         per_p, flags, min_roughness, normal_scale, grad, g_pos, g_geom, g_smooth,
                         g_tangent, g_kd, g_arm, g_nmap):  # pragma: no cover
        n = cuda.grid(1)
        if n >= pos.shape[0]:
            return
        if grad[n, 0] == 0.0 and grad[n, 1] == 0.0 and grad[n, 2] == 0.0:
            # a pixel whose colour gets no gradient (a recorded render's unused
            # slot, or an empty pixel): its input gradients are 0, written
            # without walking the shading
            for c in range(3):
                g_pos[n, c] = 0.0
                g_geom[n, c] = 0.0
                g_smooth[n, c] = 0.0
                g_kd[n, c] = 0.0
                g_arm[n, c] = 0.0
            if flags & 1:
                for c in range(3):
                    g_nmap[n, c] = 0.0
                for c in range(4):
                    g_tangent[n, c] = 0.0
            return
        _pixel(n, pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l,
               per_p, flags | 8, min_roughness, normal_scale, grad, g_pos, g_geom, g_smooth,
               g_tangent, g_kd, g_arm, g_nmap)


def forward(inputs: tuple, rows: tuple, flags: int, min_roughness: float,
            normal_scale: float, out: torch.Tensor) -> None:
    """cpu_shade.forward's contract, on the tensors' GPU (or the simulator)."""
    with launch(out.device) as run:
        run(_forward_kernel, out.shape[0], *inputs, *rows, flags, min_roughness, normal_scale,
            out)


def backward(inputs: tuple, rows: tuple, flags: int, min_roughness: float,
             normal_scale: float, grad: torch.Tensor, grads: tuple) -> None:
    """cpu_shade.backward's contract, on the tensors' GPU (or the simulator)."""
    with launch(grad.device) as run:
        run(_backward_kernel, grad.shape[0], *inputs, *rows, flags, min_roughness,
            normal_scale, grad, *grads)
