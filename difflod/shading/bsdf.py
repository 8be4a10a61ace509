"""The paper's BSDF: Lambert diffuse + GGX microfacet specular.

Pure functions of tensors with broadcasting; vectors are `[...,3]` and
scalars per point `[...,1]`. The model is nvdiffmodeling's "pbr" BSDF:

- diffuse: kd * (1 - metallic) * max(n.wi, 0) / pi;
- specular: D * G * F / (4 n.wo), i.e. the microfacet BSDF times n.wi,
  with D the GGX (Trowbridge-Reitz) distribution, G the height-correlated
  Smith masking-shadowing term and F Schlick's Fresnel with f90 = 1;
- metallic workflow: f0 = lerp(0.04, kd, metallic);
- alpha = roughness^2, clamped to [min_roughness^2, 1].

ks / arm channel 0: as in nvdiffmodeling, it is *not* an ambient-occlusion
factor (a point light has no ambient term); it scales the specular
reflectance down: f0 *= (1 - arm.x). 0 means full specular (the default
Material has ks.x = 0); 1 zeroes f0, leaving only Schlick's grazing rim
(1 - cos)^5. Channel 1 is the roughness, channel 2 metallic.

Both returned terms include the cosine factor n.wi, so radiance towards the
viewer is `pbr_bsdf(...) * light scale` (see render.light).

Numerics: cosines are clamped to [1e-4, 1] before any division or sqrt, so
every function is finite with finite gradients at grazing angles and for
zero vectors. (nvdiffmodeling clamps to 1 - 1e-4 at the top, which caps the
GGX peak of smooth surfaces: at roughness 0.08 the normal-incidence D is 36x
too small. Nothing diverges at cos = 1, so difflod keeps the exact peak.)
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "SPECULAR_EPS",
    "dot",
    "fresnel_schlick",
    "lambda_ggx",
    "lambert",
    "masking_smith_ggx_correlated",
    "ndf_ggx",
    "pbr_bsdf",
    "pbr_specular",
    "safe_normalize",
]

SPECULAR_EPS = 1e-4


def dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Dot product over the last axis, kept: `[...,3] x [...,3] -> [...,1]`."""
    return torch.sum(x * y, dim=-1, keepdim=True)


def safe_normalize(x: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    """x / |x| with |x|^2 clamped to eps (finite value and gradient at 0)."""
    return x / torch.sqrt(torch.clamp(dot(x, x), min=eps))


def _clamp_cos(cos: torch.Tensor) -> torch.Tensor:
    return torch.clamp(cos, min=SPECULAR_EPS, max=1.0)


def lambert(n: torch.Tensor, wi: torch.Tensor) -> torch.Tensor:
    """Lambert BSDF times cosine: max(n.wi, 0) / pi, `[...,1]`. n, wi unit `[...,3]`."""
    return torch.clamp(dot(n, wi), min=0.0) / math.pi


def fresnel_schlick(f0: torch.Tensor, f90: torch.Tensor | float,
                    cos: torch.Tensor) -> torch.Tensor:
    """Schlick's Fresnel: f0 + (f90 - f0) (1 - cos)^5, cos clamped to (0, 1)."""
    return f0 + (f90 - f0) * (1.0 - _clamp_cos(cos)) ** 5


def ndf_ggx(alpha_sqr: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """GGX normal distribution D(h) = a^2 / (pi ((a^2 - 1) cos^2 + 1)^2), cos = n.h."""
    c = _clamp_cos(cos)
    d = (alpha_sqr - 1.0) * c * c + 1.0
    return alpha_sqr / (d * d * math.pi)


def lambda_ggx(alpha_sqr: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Smith's Lambda for GGX: (sqrt(1 + a^2 tan^2) - 1) / 2."""
    c = _clamp_cos(cos)
    c2 = c * c
    tan2 = (1.0 - c2) / c2
    return 0.5 * (torch.sqrt(1.0 + alpha_sqr * tan2) - 1.0)


def masking_smith_ggx_correlated(alpha_sqr: torch.Tensor, cos_o: torch.Tensor,
                                 cos_i: torch.Tensor) -> torch.Tensor:
    """Height-correlated Smith masking-shadowing G2 = 1 / (1 + Lambda_o + Lambda_i), in (0,1]."""
    return 1.0 / (1.0 + lambda_ggx(alpha_sqr, cos_o) + lambda_ggx(alpha_sqr, cos_i))


def pbr_specular(col: torch.Tensor, nrm: torch.Tensor, wo: torch.Tensor, wi: torch.Tensor,
                 alpha: torch.Tensor, min_roughness: float = 0.08) -> torch.Tensor:
    """GGX specular times cosine, `[...,3]`.

    Args:
        col: specular reflectance f0 `[...,3]`.
        nrm, wo, wi: unit normal, direction to viewer, direction to light `[...,3]`.
        alpha: GGX alpha (= roughness^2) `[...,1]`, clamped to [min_roughness^2, 1].

    Zero where the viewer or the light is below the surface (cos <= 1e-4).
    """
    a = torch.clamp(alpha, min=min_roughness * min_roughness, max=1.0)
    alpha_sqr = a * a
    h = safe_normalize(wo + wi)
    wo_n, wi_n = dot(wo, nrm), dot(wi, nrm)
    d = ndf_ggx(alpha_sqr, dot(nrm, h))
    g = masking_smith_ggx_correlated(alpha_sqr, wo_n, wi_n)
    f = fresnel_schlick(col, 1.0, dot(wo, h))
    w = f * d * g * 0.25 / torch.clamp(wo_n, min=SPECULAR_EPS)
    front = (wo_n > SPECULAR_EPS) & (wi_n > SPECULAR_EPS)
    return torch.where(front, w, torch.zeros_like(w))


def pbr_bsdf(kd: torch.Tensor, arm: torch.Tensor, pos: torch.Tensor, nrm: torch.Tensor,
             view_pos: torch.Tensor, light_pos: torch.Tensor,
             min_roughness: float = 0.08) -> torch.Tensor:
    """Diffuse + specular reflection (cosine included) towards the viewer, `[...,3]`.

    Args:
        kd: base color `[...,3]` linear.
        arm: `[...,3]` (specular attenuation, roughness, metallic); see the
            module docstring for channel 0.
        pos: shaded points `[...,3]`; nrm: unit shading normals `[...,3]`.
        view_pos, light_pos: eye and light positions broadcastable to pos.
        min_roughness: lower bound on roughness (alpha >= min_roughness^2).
    """
    wo = safe_normalize(view_pos - pos)
    wi = safe_normalize(light_pos - pos)
    spec_atten, roughness, metallic = arm[..., 0:1], arm[..., 1:2], arm[..., 2:3]
    f0 = (0.04 * (1.0 - metallic) + kd * metallic) * (1.0 - spec_atten)
    diffuse = kd * (1.0 - metallic) * lambert(nrm, wi)
    specular = pbr_specular(f0, nrm, wo, wi, roughness * roughness, min_roughness)
    return diffuse + specular
