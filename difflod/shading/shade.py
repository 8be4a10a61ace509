"""The PBR pixel shader: shading normal, two-sided lighting, point light.

`shade` follows nvdiffmodeling's `shade` + `prepare_shading_normal`:

1. Normal map (tangent space, +Y up, glTF/OpenGL convention): the shading
   normal is normalize(T * x + B * y + N * max(z, 0)), with N the normalized
   interpolated normal, T the interpolated tangent made orthogonal to N, and
   B = w * cross(N, T) (w = the tangent's handedness). The map's XY are
   scaled by `normal_scale` (glTF normalTexture.scale).
2. Two-sided shading: where the geometric (face) normal faces away from the
   viewer, both the shading and the geometric normal are flipped.
3. Bent normals: a shading normal that grazes or faces away from the viewer
   is bent towards the geometric normal: n = lerp(N_geom, n, clamp(n.v / 0.1,
   0, 1)), then renormalized (nvdiffmodeling does not renormalize; we do so
   the BSDF gets a unit vector).
4. BSDF: bsdf.pbr_bsdf, times the light scale (scene.light: constant
   light_power as in nvdiffmodeling, or inverse-square falloff on request).
5. Emission: the material's emissive radiance is added unlit, as glTF's
   material model and three.js do: color = BSDF x light + emissive.

`shade(..., compiled=True)` runs steps 1-5 (`shade_core`) through
shading/compiled.py (torch.compile, dynamic shapes: the renderer shades a
different number of covered pixels each step): forward and backward become a
few fused kernels instead of 161 eager kernels forward and 342 backward (with
a normal map; counted with torch.profiler). `shade_core` itself is the
reference; tests hold the compiled path to it.
"""

from __future__ import annotations

import torch

from difflod.scene.light import light_scale
from difflod.shading import compiled as compilation
from difflod.shading.bsdf import dot, pbr_bsdf, safe_normalize

__all__ = ["NORMAL_THRESHOLD", "check_args", "shade", "shade_core", "shading_normal"]

#: nvdiffmodeling's threshold on n.v below which the shading normal is bent.
NORMAL_THRESHOLD = 0.1


def _check(name: str, t: torch.Tensor | None, channels: tuple[int, ...],
           like: torch.Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[-1] not in channels \
            or t.shape[:3] != like.shape[:3]:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be [{','.join(map(str, like.shape[:3]))},{channels}] "
                         f"float, got {got}")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device}, gb_pos on {like.device}")


def shading_normal(pos: torch.Tensor, view_pos: torch.Tensor, geom_nrm: torch.Tensor,
                   smooth_nrm: torch.Tensor, tangent: torch.Tensor | None,
                   nmap: torch.Tensor | None, normal_scale: float = 1.0) -> torch.Tensor:
    """Unit shading normal `[...,3]` (steps 1-3 of the module docstring).

    Args:
        pos: `[...,3]` points; view_pos broadcastable to it.
        geom_nrm: `[...,3]` geometric (face) normals; smooth_nrm: `[...,3]`
            interpolated vertex normals.
        tangent: `[...,4]` (xyz, handedness w) or None (needed with nmap).
        nmap: `[...,3]` tangent-space normal in [-1,1] or None.
    """
    n = safe_normalize(smooth_nrm)
    if nmap is not None:
        if tangent is None:
            raise ValueError("gb_tangent is required when a normal map (gb_nmap) is given")
        # split, not sliced: one concatenation in the backward instead of a
        # zero-filled copy per slice
        t, w = tangent.split((3, 1), dim=-1)
        t = safe_normalize(t - n * dot(n, t))
        hand = torch.where(w < 0, -1.0, 1.0).to(n.dtype)
        b = hand * torch.linalg.cross(n, t, dim=-1)
        x, y, z = nmap.split(1, dim=-1)
        n = safe_normalize(t * (x * normal_scale) + b * (y * normal_scale)
                           + n * torch.clamp(z, min=0.0))
    geom = safe_normalize(geom_nrm)
    view = safe_normalize(view_pos - pos)
    # flip both where the face is seen from behind: one sign per point, and the
    # bend's weight from the unflipped normal (sign * dot = dot of the flipped)
    sign = torch.where(dot(geom, view) > 0, 1.0, -1.0).to(n.dtype)
    w = torch.clamp(sign * dot(view, n) / NORMAL_THRESHOLD, min=0.0, max=1.0)
    return safe_normalize(torch.lerp(geom, n, w) * sign)


def shade(gb_pos: torch.Tensor, gb_geom_normal: torch.Tensor, gb_normal: torch.Tensor,
          gb_tangent: torch.Tensor | None, gb_kd: torch.Tensor, gb_ks: torch.Tensor,
          gb_nmap: torch.Tensor | None, view_pos: torch.Tensor, light_pos: torch.Tensor,
          light_power: float | torch.Tensor, min_roughness: float = 0.08, *,
          normal_scale: float = 1.0, light_falloff: bool = False,
          compiled: bool = False, gb_ke: torch.Tensor | None = None) -> torch.Tensor:
    """Shade a G-buffer with one point light; returns linear color `[B,H,W,3]`.

    Args:
        gb_pos: `[B,H,W,3]` float positions (mesh space).
        gb_geom_normal: `[B,H,W,3]` geometric (face) normals, any length.
        gb_normal: `[B,H,W,3]` interpolated vertex normals, any length.
        gb_tangent: `[B,H,W,4]` tangents (xyz, handedness w) or None.
        gb_kd: `[B,H,W,3|4]` base color (alpha, if any, is ignored here).
        gb_ks: `[B,H,W,3]` (specular attenuation, roughness, metallic).
        gb_nmap: `[B,H,W,3]` tangent-space normal map sample or None.
        view_pos, light_pos: `[B,3]` eye / light positions in mesh space.
        light_power: scalar (or `[B]` tensor) light power.
        min_roughness: roughness lower bound.
        normal_scale: scale of the normal map's XY.
        light_falloff: inverse-square falloff (off = nvdiffmodeling's constant).
        compiled: run `shade_core` through shading.compiled (see the module docstring).
        gb_ke: `[B,H,W,3]` emissive radiance (linear RGB, added unlit) or None.

    Raises:
        ValueError: naming the argument with the wrong shape or device.
    """
    check_args(gb_pos, gb_geom_normal, gb_normal, gb_tangent, gb_kd, gb_ks, gb_nmap, gb_ke,
               view_pos, light_pos)
    vp = view_pos[:, None, None, :].to(gb_pos)
    lp = light_pos[:, None, None, :].to(gb_pos)
    power = light_power
    if isinstance(power, torch.Tensor) and power.dim() == 1:
        power = power[:, None, None, None]
    if not isinstance(power, torch.Tensor):
        # on the device, made by a fill: a CPU tensor in a compiled graph makes
        # Inductor generate a C++ kernel for it (a compiler run on the host), and
        # a host copy cannot be recorded in a CUDA graph
        power = torch.full((), float(power), dtype=gb_pos.dtype, device=gb_pos.device)
    core = compilation.compiled(shade_core) if compiled else shade_core
    return core(gb_pos, gb_geom_normal, gb_normal, gb_tangent, gb_kd, gb_ks, gb_nmap, gb_ke, vp,
                lp, power, min_roughness, normal_scale, light_falloff)


def check_args(gb_pos: torch.Tensor, gb_geom_normal: torch.Tensor, gb_normal: torch.Tensor,
               gb_tangent: torch.Tensor | None, gb_kd: torch.Tensor, gb_ks: torch.Tensor,
               gb_nmap: torch.Tensor | None, gb_ke: torch.Tensor | None,
               view_pos: torch.Tensor, light_pos: torch.Tensor) -> None:
    """shade's argument checks (shapes and devices; see shade).

    Raises:
        ValueError: naming the argument with the wrong shape or device.
    """
    if not isinstance(gb_pos, torch.Tensor) or gb_pos.dim() != 4 or gb_pos.shape[-1] != 3:
        got = tuple(gb_pos.shape) if isinstance(gb_pos, torch.Tensor) else type(gb_pos).__name__
        raise ValueError(f"gb_pos must be [B,H,W,3] float, got {got}")
    _check("gb_geom_normal", gb_geom_normal, (3,), gb_pos)
    _check("gb_normal", gb_normal, (3,), gb_pos)
    _check("gb_tangent", gb_tangent, (4,), gb_pos)
    _check("gb_kd", gb_kd, (3, 4), gb_pos)
    _check("gb_ks", gb_ks, (3,), gb_pos)
    _check("gb_nmap", gb_nmap, (3,), gb_pos)
    _check("gb_ke", gb_ke, (3,), gb_pos)
    b = gb_pos.shape[0]
    for name, v in (("view_pos", view_pos), ("light_pos", light_pos)):
        if not isinstance(v, torch.Tensor) or v.shape not in ((b, 3), (1, 3)):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name} must be [{b},3], got {got}")


def shade_core(pos: torch.Tensor, geom_nrm: torch.Tensor, smooth_nrm: torch.Tensor,
               tangent: torch.Tensor | None, kd: torch.Tensor, ks: torch.Tensor,
               nmap: torch.Tensor | None, ke: torch.Tensor | None, view_pos: torch.Tensor,
               light_pos: torch.Tensor, power: torch.Tensor, min_roughness: float,
               normal_scale: float, falloff: bool) -> torch.Tensor:
    """Steps 1-5 on checked arguments (view_pos, light_pos `[B,1,1,3]`, power a
    tensor broadcastable to `[B,1,1,1]`, ke the emissive radiance or None): the
    eager reference of the compiled path."""
    nrm = shading_normal(pos, view_pos, geom_nrm, smooth_nrm, tangent, nmap, normal_scale)
    col = pbr_bsdf(kd if kd.shape[-1] == 3 else kd[..., 0:3], ks, pos, nrm, view_pos, light_pos,
                   min_roughness)
    col = col * light_scale(light_pos, pos, power, falloff=falloff)
    return col if ke is None else col + ke
