"""The point light: placement sampling and irradiance scale.

difflod lights a model with one point light per view, as nvdiffmodeling does.
Its position is drawn cosine-weighted around the camera direction
(`cosine_sample`), so the light mostly comes from the viewer's side.

Intensity: nvdiffmodeling multiplies the BSDF (cosine included) by
`light_power` with no distance falloff; difflod does the same by default so
that nvdiffmodeling configurations (light_power = 5 at radius 3.5) give the
same brightness. `light_scale(..., falloff=True)` divides by the squared
distance instead, for a physically based point light of intensity
`light_power`.
"""

from __future__ import annotations

import math

import torch

__all__ = ["cosine_sample", "light_scale"]


def cosine_sample(direction: object, generator: torch.Generator) -> torch.Tensor:
    """A unit vector `[3]` float64 drawn with pdf cos(theta)/pi around `direction`.

    Args:
        direction: 3-vector, need not be unit length, must not be zero.
        generator: CPU torch.Generator; two uniforms are drawn (phi, then s).

    Raises:
        ValueError: if direction is not a non-zero 3-vector.
    """
    n = torch.as_tensor(direction, dtype=torch.float64).detach().cpu()
    if n.shape != (3,) or float(n.norm()) < 1e-12:
        raise ValueError(f"direction must be a non-zero 3-vector, got {n.tolist()}")
    n = n / n.norm()
    # A tangent frame (dx, dy, n): take the longer of two vectors orthogonal to n.
    dx0 = torch.stack([torch.zeros((), dtype=torch.float64), n[2], -n[1]])
    dx1 = torch.stack([-n[2], torch.zeros((), dtype=torch.float64), n[0]])
    dx = dx0 if float(dx0 @ dx0) > float(dx1 @ dx1) else dx1
    dx = dx / dx.norm()
    dy = torch.linalg.cross(n, dx)
    u = torch.rand(2, generator=generator, dtype=torch.float64)
    phi = 2.0 * math.pi * u[0]
    cos_t, sin_t = torch.sqrt(u[1]), torch.sqrt(1.0 - u[1])
    return dx * (torch.cos(phi) * sin_t) + dy * (torch.sin(phi) * sin_t) + n * cos_t


def light_scale(light_pos: torch.Tensor, pos: torch.Tensor, light_power: float | torch.Tensor,
                falloff: bool = False) -> torch.Tensor:
    """Factor multiplying the BSDF (cosine included) for a point light.

    Args:
        light_pos: light position broadcastable to `pos`, e.g. `[B,1,1,3]`.
        pos: shaded points `[...,3]`.
        light_power: scalar or tensor broadcastable to `[...,1]`.
        falloff: divide by the squared distance (physical point light) when
            True; nvdiffmodeling's constant scale when False.

    Returns:
        `[...,1]` tensor (or a broadcastable scalar tensor when falloff is off).
    """
    # a float or CPU scalar stays a CPU scalar tensor, which torch combines with
    # tensors of any device without a host-to-device copy
    power = torch.as_tensor(light_power, dtype=pos.dtype)
    if power.dim() or power.device.type != "cpu":
        power = power.to(pos.device)
    if not falloff:
        return power
    d = light_pos - pos
    dist2 = torch.clamp(torch.sum(d * d, dim=-1, keepdim=True), min=1e-8)
    return power / dist2
