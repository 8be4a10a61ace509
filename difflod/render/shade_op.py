"""The shading pass of the renderer: shading/shade.py's `shade` as one fused
op where a kernel backend serves the tensors, the plain-torch `shade` (the
reference) elsewhere.

`shade(...)` takes `shading.shade.shade`'s arguments plus `backend` and
returns the same `[B,H,W,3]` colour. The "cpu" backend (numba,
backends/cpu_shade.py) and the "cuda" backend (numba-cuda,
backends/cuda_shade.py) run `shade_core` forward in one kernel and its
backward in another, both from cpu_shade.shade_pixel's per-pixel code,
with gradients to the eight G-buffer inputs. The reference runs instead when:

- `compiled` is asked (torch.compile fuses the reference);
- the backend is "torch", or numba-cuda is not importable;
- a gradient is asked of the view or light positions or the light power
  (the kernels give none).

tests/render/test_shade_fused.py holds the fused op to the reference: values,
gradients and float64 gradcheck.
"""

from __future__ import annotations

from types import ModuleType

import torch

from difflod.render.backends import get_backend
from difflod.shading import shade as reference

__all__ = ["shade"]


def shade(gb_pos: torch.Tensor, gb_geom_normal: torch.Tensor, gb_normal: torch.Tensor,
          gb_tangent: torch.Tensor | None, gb_kd: torch.Tensor, gb_ks: torch.Tensor,
          gb_nmap: torch.Tensor | None, view_pos: torch.Tensor, light_pos: torch.Tensor,
          light_power: float | torch.Tensor, min_roughness: float = 0.08, *,
          normal_scale: float = 1.0, light_falloff: bool = False, compiled: bool = False,
          gb_ke: torch.Tensor | None = None, backend: str | None = None) -> torch.Tensor:
    """`shading.shade.shade`, fused where a kernel serves (see the module docstring)."""
    kernels = None if compiled else _fusable(gb_pos, view_pos, light_pos, light_power, gb_nmap,
                                             gb_tangent, backend)
    if kernels is None:
        return reference.shade(gb_pos, gb_geom_normal, gb_normal, gb_tangent, gb_kd, gb_ks,
                               gb_nmap, view_pos, light_pos, light_power, min_roughness,
                               normal_scale=normal_scale, light_falloff=light_falloff,
                               compiled=compiled, gb_ke=gb_ke)
    return fused(kernels, gb_pos, gb_geom_normal, gb_normal, gb_tangent, gb_kd, gb_ks, gb_nmap,
                 view_pos, light_pos, light_power, min_roughness, normal_scale=normal_scale,
                 light_falloff=light_falloff, gb_ke=gb_ke)


def fused(kernels: ModuleType, gb_pos: torch.Tensor, gb_geom_normal: torch.Tensor,
          gb_normal: torch.Tensor, gb_tangent: torch.Tensor | None, gb_kd: torch.Tensor,
          gb_ks: torch.Tensor, gb_nmap: torch.Tensor | None, view_pos: torch.Tensor,
          light_pos: torch.Tensor, light_power: float | torch.Tensor,
          min_roughness: float = 0.08, *, normal_scale: float = 1.0,
          light_falloff: bool = False, gb_ke: torch.Tensor | None = None) -> torch.Tensor:
    """`shade` by the kernel module `kernels` (cpu_shade or cuda_shade, which the
    tests pass under numba's CUDA simulator), on arguments `shade` found fusable."""
    reference.check_args(gb_pos, gb_geom_normal, gb_normal, gb_tangent, gb_kd, gb_ks, gb_nmap,
                         gb_ke, view_pos, light_pos)
    b, h, w = gb_pos.shape[:3]
    n = b * h * w
    dtype, device = gb_pos.dtype, gb_pos.device

    def flat(t: torch.Tensor | None, c: int) -> torch.Tensor:
        if t is None:
            return torch.zeros(1, c, dtype=dtype, device=device)
        return t.reshape(n, t.shape[-1]).to(dtype).contiguous()

    # on the G-buffer's device: a kernel cannot read another device's memory
    power = light_power.reshape(-1).to(device, dtype).contiguous() \
        if isinstance(light_power, torch.Tensor) else torch.full((1,), float(light_power),
                                                                 dtype=dtype, device=device)
    vp = view_pos.to(device, dtype).contiguous()
    lp = light_pos.to(device, dtype).contiguous()
    rows = (n // vp.shape[0], n // lp.shape[0], n // power.shape[0])
    flags = int(gb_nmap is not None) | int(gb_ke is not None) << 1 | int(light_falloff) << 2
    kd = gb_kd if gb_kd.shape[-1] == 3 else gb_kd[..., 0:3]
    out = _Fused.apply(kernels, flat(gb_pos, 3), flat(gb_geom_normal, 3), flat(gb_normal, 3),
                       flat(gb_tangent, 4), flat(kd, 3), flat(gb_ks, 3), flat(gb_nmap, 3),
                       flat(gb_ke, 3), vp, lp, power, rows, flags, float(min_roughness),
                       float(normal_scale))
    return out.reshape(b, h, w, 3)


def _kernels(pos: torch.Tensor, backend: str | None) -> ModuleType | None:
    """The kernel module of the backend that serves `pos`'s device, or None."""
    name = get_backend(backend, pos.device).name
    if name == "cpu":
        from difflod.render.backends import cpu_shade

        return cpu_shade
    if name == "cuda":
        from difflod.render.backends import cuda_shade

        return cuda_shade if cuda_shade.available() else None
    return None


def _fusable(pos: torch.Tensor, view_pos: object, light_pos: object, power: object,
             nmap: torch.Tensor | None, tangent: torch.Tensor | None,
             backend: str | None) -> ModuleType | None:
    """The kernel module that can shade these arguments, or None (the reference)."""
    if not isinstance(pos, torch.Tensor) or pos.dtype not in (torch.float32, torch.float64) \
            or pos.dim() != 4:
        return None  # the reference raises its error
    if any(isinstance(t, torch.Tensor) and t.requires_grad
           for t in (view_pos, light_pos, power)):
        return None
    if nmap is not None and tangent is None:
        return None  # the reference raises its error
    if isinstance(power, torch.Tensor) and (
            power.dim() > 1 or power.numel() == 0 or pos.shape[:3].numel() % power.numel()):
        return None  # a power not one per image or pixel
    return _kernels(pos, backend)


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels, pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, power,
                rows, flags, min_roughness, normal_scale):  # type: ignore[override]
        inputs = (pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, power)
        out = torch.empty(pos.shape[0], 3, dtype=pos.dtype, device=pos.device)
        kernels.forward(inputs, rows, flags, min_roughness, normal_scale, out)
        ctx.save_for_backward(*inputs)
        ctx.settings = (kernels, rows, flags, min_roughness, normal_scale)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        inputs = ctx.saved_tensors
        kernels, rows, flags, min_roughness, normal_scale = ctx.settings
        # the kernel writes every row of each gradient, but the tangent's (3) and
        # the normal map's (6) only where a normal map is given: those start at 0
        grads = tuple(torch.zeros_like(t) if i in (3, 6) else torch.empty_like(t)
                      for i, t in enumerate(inputs[:7]))
        kernels.backward(inputs, rows, flags, min_roughness, normal_scale,
                         grad.to(inputs[0].dtype).contiguous(), grads)
        need = ctx.needs_input_grad[1:]  # after `kernels`
        ke_grad = grad if need[7] else None
        return (None, *(g if need[i] else None for i, g in enumerate(grads)), ke_grad,
                None, None, None, None, None, None, None)
