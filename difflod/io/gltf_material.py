"""glTF materials -> difflod `Material`s (the reader's half; gltf_write writes them).

The channel mapping is the one in gltf.py's docstring and DESIGN.md's table:
base color (sRGB -> linear, times its factor, alpha unless OPAQUE); ks =
(1 - KHR_materials_specular strength, roughness, metallic); occlusion as its
own map; the normal map with its scale; emissive = emissiveFactor x
sRGB->linear(emissiveTexture) x KHR_materials_emissive_strength (None when
the factor or the strength is 0); the UV transform of the base color texture
for the caller to apply. What difflod drops is named in one warning per
material.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from difflod.io.gltf_json import JsonObject, check_member
from difflod.io.gltf_read import GltfSource
from difflod.mesh import Material

__all__ = ["default_material", "read_material"]

# the shapes of the extension members read (extensions are plain dicts)
_TEXTURE_INFO: dict[str, Any] = {"index": "integer", "texCoord": "integer", "extensions": {}}
_TEXTURE_TRANSFORM: dict[str, Any] = {"offset": ["number"], "scale": ["number"],
                                      "rotation": "number", "texCoord": "integer"}
_SPECULAR: dict[str, Any] = {"specularFactor": "number", "specularTexture": {}}
_EMISSIVE_STRENGTH: dict[str, Any] = {"emissiveStrength": "number"}

# material extensions read
_MATERIAL_EXTENSIONS = frozenset({"KHR_materials_specular", "KHR_materials_emissive_strength"})


def default_material() -> Material:
    return Material()


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """`difflod.io.image.srgb_to_linear` in numpy (same formula; no torch thread pool)."""
    x = x.astype(np.float32, copy=False)
    return np.where(x <= 0.04045, x / np.float32(12.92),
                    ((np.maximum(x, np.float32(0.04045)) + np.float32(0.055))
                     / np.float32(1.055)) ** np.float32(2.4)).astype(np.float32)


def _uv_matrix(ext: dict) -> np.ndarray:
    """KHR_texture_transform -> `[3,3]` acting on (u, v, 1): T(offset) R(rotation) S(scale)."""
    ox, oy = ext.get("offset", [0.0, 0.0])
    sx, sy = ext.get("scale", [1.0, 1.0])
    c, s = np.cos(float(ext.get("rotation", 0.0))), np.sin(float(ext.get("rotation", 0.0)))
    return (np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]], np.float64)
            @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) @ np.diag([sx, sy, 1.0]))


def _transform_of(src: GltfSource, info: Any, what: str) -> tuple[np.ndarray | None, int]:
    if info is None:
        return None, 0
    ext = (info.extensions or {}).get("KHR_texture_transform")
    tex_coord = info.texCoord or 0
    if not ext:
        return None, tex_coord
    check_member(ext, _TEXTURE_TRANSFORM, f"{what}: KHR_texture_transform", src.path)
    for key in ("offset", "scale"):
        if key in ext and len(ext[key]) != 2:
            raise src.error(f"{what}: KHR_texture_transform {key} must be 2 numbers")
    return _uv_matrix(ext), int(ext.get("texCoord", tex_coord))


def _texture(src: GltfSource, info: Any, what: str) -> np.ndarray | None:
    if info is None:
        return None
    tex = src.item("textures", info.index, what)
    if tex.source is None:
        raise src.error(f"texture {info.index} ({what}): has no PNG/JPEG source")
    return src.image(tex.source, f"texture {info.index}")


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == hw:
        return img
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False)[0] \
        .permute(1, 2, 0).numpy()


def _texture_info(src: GltfSource, raw: Any, where: str) -> JsonObject | None:
    """An extension's textureInfo (a plain dict), checked, as a JsonObject."""
    if raw is None:
        return None
    check_member(raw, _TEXTURE_INFO, where, src.path)
    return JsonObject(raw)


def _warn_unsupported(src: GltfSource, mat: Any, what: str) -> None:
    """One warning naming the material features difflod drops."""
    dropped = sorted(set(mat.extensions or {}) - _MATERIAL_EXTENSIONS)
    if dropped:
        warnings.warn(f"{src.path}: {what} ({mat.name or 'unnamed'}): difflod does not "
                      f"support {', '.join(dropped)}; rendered and written without it",
                      stacklevel=5)


def _emissive(src: GltfSource, mat: Any, what: str) -> np.ndarray | None:
    """Emitted radiance `[H,W,3]` (`[1,1,3]` without a texture), or None when
    the material emits nothing (factor or strength 0: glTF's default)."""
    factor = np.asarray(mat.emissiveFactor if mat.emissiveFactor is not None
                        else [0.0, 0.0, 0.0], np.float32)
    if factor.shape != (3,) or not np.isfinite(factor).all() or (factor < 0).any():
        raise src.error(f"{what}: emissiveFactor must be 3 finite numbers >= 0")
    ext = (mat.extensions or {}).get("KHR_materials_emissive_strength") or {}
    check_member(ext, _EMISSIVE_STRENGTH, f"{what}: KHR_materials_emissive_strength", src.path)
    strength = ext.get("emissiveStrength", 1.0)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) \
            or not math.isfinite(strength) or strength < 0:
        raise src.error(f"{what}: KHR_materials_emissive_strength emissiveStrength must be a "
                        f"finite number >= 0, got {strength!r}")
    img = _texture(src, mat.emissiveTexture, f"emissiveTexture of {what}")
    scale = factor * np.float32(strength)
    if not np.isfinite(scale).all():
        raise src.error(f"{what}: emissiveFactor x emissiveStrength is not finite in float32")
    if not (scale > 0).any():
        return None
    if img is None:
        return scale.reshape(1, 1, 3)
    rgb = img[..., :1].repeat(3, axis=-1) if img.shape[-1] <= 2 else img[..., :3]
    return _srgb_to_linear(np.clip(rgb, 0, 1)) * scale


def read_material(src: GltfSource, index: int) -> tuple[Material, np.ndarray | None, int]:
    """(Material, UV transform `[3,3]` or None, TEXCOORD set) of glTF material `index`."""
    mat = src.item("materials", index, "primitive material")
    what = f"material {index}"
    pbr = mat.pbrMetallicRoughness
    factor = np.asarray(pbr.baseColorFactor if pbr and pbr.baseColorFactor is not None
                        else [1, 1, 1, 1], np.float32)
    metal_f = float(pbr.metallicFactor if pbr and pbr.metallicFactor is not None else 1.0)
    rough_f = float(pbr.roughnessFactor if pbr and pbr.roughnessFactor is not None else 1.0)
    if factor.shape != (4,) or not np.isfinite(factor).all():
        raise src.error(f"{what}: baseColorFactor must be 4 finite numbers")
    alpha_mode = mat.alphaMode or "OPAQUE"
    if alpha_mode not in ("OPAQUE", "MASK", "BLEND"):
        raise src.error(f"{what}: unknown alphaMode {alpha_mode!r}")
    base_info = pbr.baseColorTexture if pbr else None
    mr_info = pbr.metallicRoughnessTexture if pbr else None

    base = _texture(src, base_info, f"baseColorTexture of {what}")
    if base is None:
        kd = np.broadcast_to(factor, (1, 1, 4)).copy()
    else:
        rgb = _srgb_to_linear(np.clip(base[..., :3], 0, 1))
        alpha = base[..., 3:4] if base.shape[-1] == 4 else np.ones_like(base[..., :1])
        kd = np.concatenate([rgb, alpha], axis=-1) * factor
    if alpha_mode == "OPAQUE":
        kd = kd[..., :3]

    mr = _texture(src, mr_info, f"metallicRoughnessTexture of {what}")
    if not isinstance(mat.extensions or {}, dict):
        raise src.error(f"{what}: extensions must be an object")
    spec_ext = (mat.extensions or {}).get("KHR_materials_specular") or {}
    check_member(spec_ext, _SPECULAR, f"{what}: KHR_materials_specular", src.path)
    spec_info = _texture_info(src, spec_ext.get("specularTexture"),
                              f"{what}: KHR_materials_specular.specularTexture")
    spec = _texture(src, spec_info, f"specularTexture of {what}")
    spec_f = spec_ext.get("specularFactor", 1.0)
    if isinstance(spec_f, bool) or not isinstance(spec_f, (int, float)) \
            or not 0.0 <= spec_f <= 1.0:
        raise src.error(f"{what}: KHR_materials_specular specularFactor must be a number "
                        f"in [0,1], got {spec_f!r}")
    hw = max([t.shape[:2] for t in (mr, spec) if t is not None] or [(1, 1)],
             key=lambda s: s[0] * s[1])
    ks = np.empty((hw[0], hw[1], 3), np.float32)
    # channel 0 = 1 - KHR_materials_specular strength (specularTexture's alpha)
    ks[..., 0] = 1.0 - spec_f * (_resize(spec, hw)[..., 3] if spec is not None
                                 and spec.shape[-1] == 4 else 1.0)
    if mr is None:
        ks[..., 1], ks[..., 2] = rough_f, metal_f
    else:
        mr = _resize(mr, hw)
        ks[..., 1], ks[..., 2] = mr[..., 1] * rough_f, mr[..., 2] * metal_f

    occlusion = None
    occ = _texture(src, mat.occlusionTexture, f"occlusionTexture of {what}")
    if occ is not None:
        strength = mat.occlusionTexture.strength
        strength = 1.0 if strength is None else float(strength)
        occlusion = torch.from_numpy(np.ascontiguousarray(
            1.0 - strength * (1.0 - occ[..., 0:1]), np.float32))
    _warn_unsupported(src, mat, what)
    emissive = _emissive(src, mat, what)

    normal, normal_scale = None, 1.0
    nimg = _texture(src, mat.normalTexture, f"normalTexture of {what}")
    if nimg is not None:
        normal = torch.from_numpy(np.ascontiguousarray(nimg[..., :3] * 2.0 - 1.0))
        scale = mat.normalTexture.scale
        normal_scale = 1.0 if scale is None else float(scale)

    transform, uv_set = _transform_of(src, base_info, what)
    for info in (mr_info, mat.occlusionTexture, mat.normalTexture, spec_info,
                 mat.emissiveTexture):
        other = _transform_of(src, info, what)[0] if info is not None else transform
        same = (other is None and transform is None) or (
            other is not None and transform is not None and np.allclose(other, transform))
        if not same:
            warnings.warn(f"{src.path}: {what}: textures use different KHR_texture_transform;"
                          " only the baseColorTexture one is applied to the UVs", stacklevel=4)
            break
    material = Material(
        name=mat.name or f"material{index}",
        kd=torch.from_numpy(np.ascontiguousarray(kd, np.float32)), ks=torch.from_numpy(ks),
        normal=normal, normal_scale=normal_scale, occlusion=occlusion,
        emissive=None if emissive is None else torch.from_numpy(
            np.ascontiguousarray(emissive, np.float32)),
        alpha_mode=alpha_mode,
        alpha_cutoff=float(mat.alphaCutoff if mat.alphaCutoff is not None else 0.5),
        double_sided=bool(mat.doubleSided))
    # Material.validate's checks, in numpy (torch's cost as much as reading the mesh)
    for name, arr in (("baseColor", kd), ("metallicRoughness/specular", ks),
                      ("normalTexture.scale", np.float32(normal_scale))):
        if not np.isfinite(arr).all():
            raise src.error(f"{what}: {name} values are not finite (check the factors)")
    if not 0.0 <= material.alpha_cutoff <= 1.0:
        raise src.error(f"{what}: alphaCutoff must be in [0,1], got {material.alpha_cutoff}")
    return material, transform, uv_set
