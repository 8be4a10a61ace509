"""The shading pass of the renderer: shading/shade.py's `shade` as one fused
op where a kernel backend serves the tensors, the plain-torch `shade` (the
reference) elsewhere.

`shade(...)` takes `shading.shade.shade`'s arguments plus `backend` and
returns the same `[B,H,W,3]` colour. The "cpu" backend (numba,
backends/cpu_shade.py) runs `shade_core` forward in one kernel and its
backward in another, with gradients to the eight G-buffer inputs. The
reference runs instead when:

- the tensors are on a GPU (no CUDA kernel yet; `compiled` fuses there) or
  `compiled` is asked;
- the backend is "torch";
- a gradient is asked of the view or light positions or the light power
  (the kernels give none).

tests/render/test_shade_fused.py holds the fused op to the reference: values,
gradients and float64 gradcheck.
"""

from __future__ import annotations

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
    """`shading.shade.shade`, fused on the CPU (see the module docstring)."""
    args = (gb_pos, gb_geom_normal, gb_normal, gb_tangent, gb_kd, gb_ks, gb_nmap, view_pos,
            light_pos, light_power, min_roughness)
    kwargs = {"normal_scale": normal_scale, "light_falloff": light_falloff,
              "compiled": compiled, "gb_ke": gb_ke}
    if compiled or not _fusable(gb_pos, view_pos, light_pos, light_power, gb_nmap, gb_tangent,
                                backend):
        return reference.shade(*args, **kwargs)
    reference.check_args(gb_pos, gb_geom_normal, gb_normal, gb_tangent, gb_kd, gb_ks, gb_nmap,
                         gb_ke, view_pos, light_pos)
    b, h, w = gb_pos.shape[:3]
    n = b * h * w
    dtype = gb_pos.dtype

    def flat(t: torch.Tensor | None, c: int) -> torch.Tensor:
        if t is None:
            return torch.zeros(1, c, dtype=dtype)
        return t.reshape(n, t.shape[-1]).to(dtype).contiguous()

    power = light_power.reshape(-1).to(dtype).contiguous() \
        if isinstance(light_power, torch.Tensor) else torch.full((1,), float(light_power),
                                                                 dtype=dtype)
    vp = view_pos.to(dtype).contiguous()
    lp = light_pos.to(dtype).contiguous()
    if n % power.shape[0]:
        return reference.shade(*args, **kwargs)  # a power not per image or pixel
    rows = (n // vp.shape[0], n // lp.shape[0], n // power.shape[0])
    flags = int(gb_nmap is not None) | int(gb_ke is not None) << 1 | int(light_falloff) << 2
    kd = gb_kd if gb_kd.shape[-1] == 3 else gb_kd[..., 0:3]
    out = _Fused.apply(flat(gb_pos, 3), flat(gb_geom_normal, 3), flat(gb_normal, 3),
                       flat(gb_tangent, 4), flat(kd, 3), flat(gb_ks, 3), flat(gb_nmap, 3),
                       flat(gb_ke, 3), vp, lp, power, rows, flags, float(min_roughness),
                       float(normal_scale))
    return out.reshape(b, h, w, 3)


def _fusable(pos: torch.Tensor, view_pos: object, light_pos: object, power: object,
             nmap: torch.Tensor | None, tangent: torch.Tensor | None,
             backend: str | None) -> bool:
    if not isinstance(pos, torch.Tensor) or pos.device.type != "cpu" \
            or pos.dtype not in (torch.float32, torch.float64):
        return False
    if any(isinstance(t, torch.Tensor) and t.requires_grad
           for t in (view_pos, light_pos, power)):
        return False
    if nmap is not None and tangent is None:
        return False  # the reference raises its error
    if isinstance(power, torch.Tensor) and power.dim() > 1:
        return False
    return get_backend(backend, pos.device).name == "cpu"


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, power, rows,
                flags, min_roughness, normal_scale):  # type: ignore[override]
        from difflod.render.backends import cpu_shade

        inputs = (pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, power)
        out = torch.empty(pos.shape[0], 3, dtype=pos.dtype)
        cpu_shade.forward(inputs, rows, flags, min_roughness, normal_scale, out)
        ctx.save_for_backward(*inputs)
        ctx.settings = (rows, flags, min_roughness, normal_scale)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        from difflod.render.backends import cpu_shade

        inputs = ctx.saved_tensors
        rows, flags, min_roughness, normal_scale = ctx.settings
        # the kernel writes every row of each gradient, but the tangent's (3) and
        # the normal map's (6) only where a normal map is given: those start at 0
        grads = tuple(torch.zeros_like(t) if i in (3, 6) else torch.empty_like(t)
                      for i, t in enumerate(inputs[:7]))
        cpu_shade.backward(inputs, rows, flags, min_roughness, normal_scale,
                           grad.to(inputs[0].dtype).contiguous(), grads)
        ke_grad = grad if ctx.needs_input_grad[7] else None
        need = ctx.needs_input_grad
        return (*(g if need[i] else None for i, g in enumerate(grads)), ke_grad,
                None, None, None, None, None, None, None)
