"""A material's textures looked up at a layer's pixels (render_mesh's step 3):
kd (times the vertex colour), alpha, ks, the normal map and the emissive
map, sampled trilinearly from their mip pyramids, which a caller may give
prebuilt (`mips`: one mapping for material 0, or one per material;
`mip_stacks` builds them once for a mesh whose textures never change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from difflod.geometry.device_vector import vector
from difflod.mesh import Material, Mesh
from difflod.render.texture import texture, texture_mips

__all__ = ["MipStacks", "check_mips", "mip_stacks", "sample_material"]

_MIP_KEYS = ("kd", "ks", "normal", "emissive")


MipStacks = (Mapping[str, Sequence[torch.Tensor]]
             | Sequence[Mapping[str, Sequence[torch.Tensor]] | None])


def _mips_for(mips: MipStacks | None, index: int, key: str) -> Sequence[torch.Tensor] | None:
    """Material `index`'s given mip stack of texture `key`, or None (built per lookup)."""
    if mips is None:
        return None
    if isinstance(mips, Mapping):
        return mips.get(key) if index == 0 else None
    stacks = mips[index] if index < len(mips) else None
    return None if stacks is None else stacks.get(key)


def check_mips(mips: MipStacks) -> None:
    """render_mesh's check of its `mips` argument (ValueError naming what is wrong)."""
    for stacks in [mips] if isinstance(mips, Mapping) else mips:
        if stacks is None:
            continue
        if not isinstance(stacks, Mapping):  # ValueError: render_mesh's one error type
            raise ValueError(  # noqa: TRY004
                f"mips must be a mapping or a list of mappings (or None) per material, "
                f"got a {type(stacks).__name__} in it")
        unknown = sorted(set(stacks) - set(_MIP_KEYS))
        if unknown:
            raise ValueError(f"mips keys must be among {_MIP_KEYS}, got {unknown}")


def mip_stacks(mesh: Mesh) -> list[dict[str, list[torch.Tensor]]]:
    """Every material's mip stacks (render_mesh's `mips`, one mapping per
    material) of its textures larger than 1x1, built once, without gradients:
    for a mesh whose textures never change (the trainer's reference), so its
    renders read them instead of building each texture's pyramid again every
    time. On an H100 at spot.json's settings the recorded step's pyramid
    builds went from 0.38 to 0.19 ms (the reference's three 1024^2 maps)."""
    stacks: list[dict[str, list[torch.Tensor]]] = []
    with torch.no_grad():
        for m in mesh.materials:
            maps = {"kd": m.kd, "ks": m.ks, "normal": m.normal, "emissive": m.emissive}
            stacks.append({k: texture_mips(t.detach()) for k, t in maps.items()
                           if t is not None and (t.shape[-3] > 1 or t.shape[-2] > 1)})
    return stacks


def _lookups(textures: dict[str, torch.Tensor], uv: torch.Tensor, uv_da: torch.Tensor,
             mips: MipStacks | None, index: int,
             backend: str | None) -> dict[str, torch.Tensor]:
    """Each texture sampled at uv (trilinear): name -> `[...,C]`.

    On the CPU, trained maps of one size are concatenated along their channels
    and sampled by one call, so the taps, the level of detail and the mip walk
    are computed once for all of them (three 256^2 maps at 52k pixels: forward
    + backward 15.0 -> 7.3 ms, the same values). Maps that need no gradient
    (a reference's) keep one call each: concatenating them at every render
    costs more than it saves (three 1024^2 maps: a 38 MB copy). Caller-given
    mip stacks and GPU tensors keep one call per texture (the GPU's figures are
    still to be measured).
    """
    def look(tex: torch.Tensor, mip: Sequence[torch.Tensor] | None) -> torch.Tensor:
        return texture(tex, uv, uv_da, mip=mip, filter_mode="linear-mipmap-linear",
                       backend=backend)

    given = {k: _mips_for(mips, index, k) for k in textures}
    groups: dict[tuple, list[str]] = {}
    for k, t in textures.items():
        alone = not t.requires_grad or t.device.type != "cpu" or given[k] is not None
        groups.setdefault((k,) if alone else (tuple(t.shape[:-1]), t.dtype), []).append(k)
    out: dict[str, torch.Tensor] = {}
    for keys in groups.values():
        if len(keys) == 1:
            out[keys[0]] = look(textures[keys[0]], given[keys[0]])
            continue
        sizes = [textures[k].shape[-1] for k in keys]
        parts = look(torch.cat([textures[k] for k in keys], dim=-1), None).split(sizes, dim=-1)
        out.update(zip(keys, parts))
    return out


def sample_material(mat: Material, index: int, uv: torch.Tensor, uv_da: torch.Tensor,
                     mips: MipStacks | None,
                     with_alpha: bool, with_normal: bool, with_emissive: bool,
                     backend: str | None, tint: torch.Tensor | None = None
                     ) -> list[torch.Tensor]:
    """[kd (3), alpha (1) if with_alpha, ks (3), normal (3) if with_normal,
    emissive (3) if with_emissive] per pixel; kd (and its alpha, before a
    MASK cutoff) times `tint`, the interpolated vertex color, when given."""
    textures = {"kd": mat.kd, "ks": mat.ks}
    if with_normal and mat.normal is not None:
        textures["normal"] = mat.normal
    if with_emissive and mat.emissive is not None:
        textures["emissive"] = mat.emissive
    looked = _lookups(textures, uv, uv_da, mips, index, backend)
    kd = looked["kd"]
    if tint is not None:
        kd = kd * tint[..., :kd.shape[-1]]
    out = [kd[..., 0:3]]
    if with_alpha:
        if not mat.has_alpha:
            out.append(torch.ones_like(kd[..., 0:1]))
        elif mat.alpha_mode == "MASK":
            soft = kd[..., 3:4]
            hard = (soft >= mat.alpha_cutoff).to(soft.dtype)
            out.append(hard + (soft - soft.detach()))
        else:
            out.append(kd[..., 3:4])
    out.append(looked["ks"][..., 0:3])
    if with_normal:
        if mat.normal is None:
            flat = vector((0.0, 0.0, 1.0), kd.dtype, kd.device)
            out.append(flat.expand(kd.shape[:-1] + (3,)))
        else:
            nrm = looked["normal"]
            scale = vector((mat.normal_scale, mat.normal_scale, 1.0), nrm.dtype, nrm.device)
            out.append(nrm * scale)
    if with_emissive:
        if mat.emissive is None:
            out.append(torch.zeros_like(kd[..., 0:3]))
        else:
            out.append(looked["emissive"][..., 0:3])
    return out
