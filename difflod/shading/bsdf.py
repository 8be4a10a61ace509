"""The BSDF: glTF 2.0's metallic-roughness model with KHR_materials_specular.

Pure functions of tensors with broadcasting; vectors are `[...,3]` and
scalars per point `[...,1]`. The model is the one the glTF specification
defines (Appendix B) and three.js, Blender and Khronos' sample viewer
implement, so that what difflod optimizes is what they show:

- specular lobe: D * G * F / (4 n.wo), i.e. the microfacet BSDF times n.wi,
  with D the GGX (Trowbridge-Reitz) distribution, G the height-correlated
  Smith masking-shadowing term and F Schlick's Fresnel;
- alpha = roughness^2, clamped to [min_roughness^2, 1];
- metallic workflow with KHR_materials_specular's strength s (specular
  colour 1, ior 1.5): a dielectric reflects F_d = Schlick(f0 = 0.04 s,
  f90 = s) and its diffuse keeps what the interface lets through,
  kd / pi * (1 - F_d) ("fresnel_mix"); a metal reflects Schlick(kd, 1) and
  has no diffuse; metallic m mixes the two linearly, so the specular Fresnel
  is Schlick(lerp(0.04 s, kd, m), lerp(s, 1, m)).

ks / arm channel 0 is 1 - s: 0 (the default Material) is the plain glTF
material, 1 leaves no dielectric specular at all. It is written to glTF as
KHR_materials_specular (specularTexture alpha / specularFactor = 1 - ks.x)
and read back the same way; glTF's occlusion is a separate map (Material.
occlusion) that a point light does not see. Channel 1 is the roughness,
channel 2 metallic.

Not modelled: three.js's multiple-scattering energy compensation (it
brightens rough metals' highlights; none for dielectrics to within ~1%) and
its screen-space roughness widening; the three.js comparison test states
how far the two renderers agree.

Both returned terms include the cosine factor n.wi, so radiance towards the
viewer is `pbr_bsdf(...) * light scale` (see scene.light).

Numerics: cosines are clamped to [1e-4, 1] before any division or sqrt, so
every function is finite with finite gradients at grazing angles and for
zero vectors.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "DIELECTRIC_F0",
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
#: F0 of glTF's dielectric: ((ior - 1) / (ior + 1))^2 at ior 1.5
DIELECTRIC_F0 = 0.04


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


def _schlick_weight(cos: torch.Tensor) -> torch.Tensor:
    """(1 - cos)^5, cos clamped to (0, 1), by three products (a `pow` costs
    several times a product on the CPU, forward and backward)."""
    m = 1.0 - _clamp_cos(cos)
    m2 = m * m
    return m2 * m2 * m


def _fresnel(f0: torch.Tensor, f90: torch.Tensor | float, weight: torch.Tensor) -> torch.Tensor:
    """Schlick's Fresnel from its weight (1 - cos)^5 (_schlick_weight)."""
    return f0 + (f90 - f0) * weight


def fresnel_schlick(f0: torch.Tensor, f90: torch.Tensor | float,
                    cos: torch.Tensor) -> torch.Tensor:
    """Schlick's Fresnel: f0 + (f90 - f0) (1 - cos)^5, cos clamped to (0, 1)."""
    return _fresnel(f0, f90, _schlick_weight(cos))


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


def _specular_lobe(f0: torch.Tensor, f90: torch.Tensor | float, alpha: torch.Tensor,
                   min_roughness: float, wo_n: torch.Tensor, wi_n: torch.Tensor,
                   n_h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """GGX specular times cosine from its cosines (wo.n, wi.n, n.h) and the
    Schlick weight (1 - wo.h)^5: the scalar factors are multiplied first, so
    one product per point is `[...,3]`."""
    a = torch.clamp(alpha, min=min_roughness * min_roughness, max=1.0)
    alpha_sqr = a * a
    scale = ndf_ggx(alpha_sqr, n_h) * masking_smith_ggx_correlated(alpha_sqr, wo_n, wi_n) \
        * 0.25 / torch.clamp(wo_n, min=SPECULAR_EPS)
    front = (wo_n > SPECULAR_EPS) & (wi_n > SPECULAR_EPS)
    return _fresnel(f0, f90, weight) * torch.where(front, scale, 0.0)


def pbr_specular(col: torch.Tensor, nrm: torch.Tensor, wo: torch.Tensor, wi: torch.Tensor,
                 alpha: torch.Tensor, min_roughness: float = 0.08,
                 f90: torch.Tensor | float = 1.0) -> torch.Tensor:
    """GGX specular times cosine, `[...,3]`.

    Args:
        col: specular reflectance f0 `[...,3]`; f90: grazing reflectance.
        nrm, wo, wi: unit normal, direction to viewer, direction to light `[...,3]`.
        alpha: GGX alpha (= roughness^2) `[...,1]`, clamped to [min_roughness^2, 1].

    Zero where the viewer or the light is below the surface (cos <= 1e-4).
    """
    h = safe_normalize(wo + wi)
    return _specular_lobe(col, f90, alpha, min_roughness, dot(wo, nrm), dot(wi, nrm),
                          dot(nrm, h), _schlick_weight(dot(wo, h)))


def pbr_bsdf(kd: torch.Tensor, arm: torch.Tensor, pos: torch.Tensor, nrm: torch.Tensor,
             view_pos: torch.Tensor, light_pos: torch.Tensor,
             min_roughness: float = 0.08) -> torch.Tensor:
    """Diffuse + specular reflection (cosine included) towards the viewer, `[...,3]`.

    Args:
        kd: base color `[...,3]` linear.
        arm: `[...,3]` (1 - specular strength, roughness, metallic); see the
            module docstring.
        pos: shaded points `[...,3]`; nrm: unit shading normals `[...,3]`.
        view_pos, light_pos: eye and light positions broadcastable to pos.
        min_roughness: lower bound on roughness (alpha >= min_roughness^2).

    The half vector, the cosines and the Schlick weight are computed once and
    shared by the two Fresnel terms and the lobes.
    """
    wo = safe_normalize(view_pos - pos)
    wi = safe_normalize(light_pos - pos)
    h = safe_normalize(wo + wi)
    weight = _schlick_weight(dot(wo, h))
    wi_n = dot(wi, nrm)
    attenuation, roughness, metallic = arm.split(1, dim=-1)
    strength = 1.0 - attenuation
    f0_dielectric = DIELECTRIC_F0 * strength
    f0 = torch.lerp(f0_dielectric, kd, metallic)
    f90 = strength + (1.0 - strength) * metallic
    through = 1.0 - _fresnel(f0_dielectric, strength, weight)
    diffuse = kd * ((1.0 - metallic) * through * (torch.clamp(wi_n, min=0.0) / math.pi))
    specular = _specular_lobe(f0, f90, roughness * roughness, min_roughness, dot(wo, nrm), wi_n,
                              dot(nrm, h), weight)
    return diffuse + specular
