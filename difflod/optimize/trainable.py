"""The trainable candidate: parameters, their initial values, and the Mesh they make.

`Trainable` owns the tensors that gradient descent moves — vertex positions,
the kd / ks / normal textures (one tensor per mip level with `custom_mip`,
as nvdiffmodeling trains them), an emissive texture where any material of
the reference emits (initialised like kd: from the bake, the reference or
noise; kept >= 0 with no upper bound, since emission may exceed 1) and, with
`subdivision`, a displacement map —
and turns them into a renderable `Mesh` each step (`build`). It also knows
the valid range of each parameter (`clamp_`), and how to save and restore
them (`state_dict`, `load_state_dict`). `export_mesh` is the result to write:
the textures with the texels training did not determine filled from their
neighbours (base.texel_fill: gutters from the charts; with a noise start,
texels no view saw from those it did).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from difflod.base.bake import chart_mask
from difflod.base.texel_fill import fill_unseen
from difflod.config import TrainConfig
from difflod.geometry.smooth_positions import SmoothPositions
from difflod.mesh import Material, Mesh
from difflod.render.texture import texture_mips

__all__ = ["Trainable", "peel_layers", "resize_texture"]


def peel_layers(config: TrainConfig, reference: Mesh) -> int:
    """The depth-peeled layers of the candidate's renders: config `layers`, or,
    when null, several where a reference material is BLEND or MASK (see
    TrainConfig): with one layer, a cut-out's clear texels would hide what is
    behind them (a shrub's leaves trained on 1 layer and scored on 4 lost
    1.2 dB in training)."""
    return config.layers_for(any(m.has_alpha for m in reference.materials))


def resize_texture(tex: torch.Tensor, res: tuple[int, int]) -> torch.Tensor:
    """Resample `[H,W,C]` to `[res[0],res[1],C]` (bilinear, antialiased when shrinking)."""
    if tuple(tex.shape[:2]) == tuple(res):
        return tex.clone()
    x = tex.permute(2, 0, 1)[None]
    y = F.interpolate(x, size=tuple(res), mode="bilinear", align_corners=False,
                      antialias=bool(res[0] < tex.shape[0] or res[1] < tex.shape[1]))
    return y[0].permute(1, 2, 0).contiguous()


@dataclass
class _Texture:
    """One trainable texture: a single level, or every mip level (custom_mip)."""

    levels: list[torch.Tensor]

    @property
    def base(self) -> torch.Tensor:
        return self.levels[0]


def _initial_textures(mat: Material, res: tuple[int, int], alpha: bool, emissive: bool
                      ) -> dict[str, torch.Tensor]:
    """kd `[*res,3|4]`, ks `[*res,3]`, normal `[*res,3]` and, when `emissive`,
    emissive `[*res,3]` (float32, CPU) from `mat`, resized; kd gains an opaque
    alpha channel when `alpha` (loses it when not), normal is flat and
    emissive black when absent."""
    kd = resize_texture(mat.kd.detach().cpu().float(), res)
    if alpha and kd.shape[-1] == 3:
        kd = torch.cat([kd, torch.ones_like(kd[..., :1])], dim=-1)
    elif not alpha and kd.shape[-1] == 4:
        kd = kd[..., :3].contiguous()
    ks = resize_texture(mat.ks.detach().cpu().float(), res)
    if mat.normal is not None:
        normal = resize_texture(mat.normal.detach().cpu().float(), res)
    else:
        normal = torch.zeros((*res, 3))
        normal[..., 2] = 1.0
    out = {"kd": kd, "ks": ks, "normal": normal}
    if emissive:
        out["emissive"] = torch.zeros((*res, 3)) if mat.emissive is None else \
            resize_texture(mat.emissive.detach().cpu().float(), res).clamp_(min=0.0)
    return out


class Trainable:
    """Trainable positions and textures of the candidate mesh.

    Args:
        base: the base mesh, already in the normalized frame, with UVs.
        reference: the normalized reference (its material seeds the textures
            when config.texture_init is "reference"; the base mesh's first
            material does with "base"; "random" draws them from `generator`).
        config: the run configuration.
        generator: seeds the random textures.
    """

    #: the textures every candidate trains; "emissive" joins them when the reference emits
    TEXTURES = ("kd", "ks", "normal")

    def __init__(self, base: Mesh, reference: Mesh, config: TrainConfig,
                 generator: torch.Generator) -> None:
        if not base.has_uv:
            raise ValueError("base mesh has no UVs")
        self.config = config
        self.base = base
        device = base.device
        res = tuple(config.texture_res)
        # the material whose alpha the candidate takes (its first with alpha)
        ref_mat = next((m for m in reference.materials if m.has_alpha), reference.materials[0])
        alpha = peel_layers(config, reference) > 1 or ref_mat.kd.shape[-1] == 4
        emissive = any(m.emissive is not None for m in reference.materials)
        self.names = self.TEXTURES + (("emissive",) if emissive else ())
        init = config.texture_init
        if init == "random":
            start = {"kd": torch.rand((*res, 4 if alpha else 3), generator=generator),
                     "ks": torch.stack([
                         torch.rand(res, generator=generator) * 0.01,
                         config.min_roughness + torch.rand(res, generator=generator)
                         * (1.0 - config.min_roughness),
                         torch.rand(res, generator=generator)], dim=-1),
                     "normal": torch.zeros((*res, 3))}
            start["normal"][..., 2] = 1.0
            if emissive:  # drawn after the others: runs without emission draw as before
                start["emissive"] = torch.rand((*res, 3), generator=generator)
        else:
            start = _initial_textures(base.materials[0] if init == "base" else ref_mat, res,
                                      alpha, emissive)
        self.textures = {name: self._make_texture(start[name].to(device)) for name in self.names}
        self._start = start  # CPU, for export_mesh
        # the trained position parameter: the positions themselves, or u = (I + lambda L) x
        # (geometry.smooth_positions) with position_smoothing = lambda > 0
        self.smooth: SmoothPositions | None = None
        if config.position_smoothing > 0:
            self.smooth = SmoothPositions(base.t_pos_idx, base.num_vertices,
                                          config.position_smoothing, device)
            self.v_pos = self.smooth.to_param(base.v_pos).requires_grad_(True)
        else:
            self.v_pos = base.v_pos.detach().clone().requires_grad_(True)
        self.displacement: torch.Tensor | None = None
        if config.subdivision > 0:
            self.displacement = torch.zeros((*res, 1), device=device, requires_grad=True)
        self.alpha_mode = ref_mat.alpha_mode if alpha else "OPAQUE"
        if alpha and self.alpha_mode == "OPAQUE":
            self.alpha_mode = "MASK"
        self.alpha_cutoff = ref_mat.alpha_cutoff

    def _make_texture(self, tex: torch.Tensor) -> _Texture:
        levels = texture_mips(tex) if self.config.custom_mip else [tex]
        return _Texture([lvl.detach().clone().requires_grad_(True) for lvl in levels])

    # ---- optimizer groups -------------------------------------------------
    def param_groups(self) -> list[dict]:
        """Adam groups: positions (lr_positions) and textures (lr_textures)."""
        skip = set(self.config.skip_train)
        groups = []
        if "position" not in skip:
            groups.append({"params": [self.v_pos], "lr": self.config.lr_positions,
                           "name": "position"})
        tex_params: list[torch.Tensor] = []
        for name in self.names:
            if name not in skip:
                tex_params += self.textures[name].levels
        if self.displacement is not None and "displacement" not in skip:
            tex_params.append(self.displacement)
        if tex_params:
            groups.append({"params": tex_params, "lr": self.config.lr_textures,
                           "name": "textures"})
        return groups

    def parameters(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups() for p in g["params"]]

    # ---- the mesh they make ---------------------------------------------------
    def material(self) -> Material:
        return Material(
            name="difflod", kd=self.textures["kd"].base, ks=self.textures["ks"].base,
            normal=self.textures["normal"].base, displacement=self.displacement,
            emissive=self.textures["emissive"].base if "emissive" in self.textures else None,
            occlusion=self.base.materials[0].occlusion,  # carried, never trained
            alpha_mode=self.alpha_mode, alpha_cutoff=self.alpha_cutoff)

    def positions(self) -> torch.Tensor:
        """The candidate's vertex positions `[V,3]`, differentiable in the parameter."""
        return self.v_pos if self.smooth is None else self.smooth.positions(self.v_pos)

    def mips(self) -> dict[str, list[torch.Tensor]] | None:
        """Caller-given mip stacks per texture (custom_mip), else None."""
        if not self.config.custom_mip:
            return None
        return {name: tex.levels for name, tex in self.textures.items()}

    def base_mesh(self) -> Mesh:
        """The candidate at base resolution (what is exported), no autograd cut."""
        return dataclasses.replace(
            self.base, v_pos=self.positions(), v_nrm=None, t_nrm_idx=None, v_tng=None,
            t_tng_idx=None, t_mat=None, materials=(self.material(),))

    @torch.no_grad()
    def export_mesh(self) -> Mesh:
        """`base_mesh()` detached, its textures filled where training left them undetermined.

        Texels outside the UV charts take the nearest chart texel's value;
        texels inside them that training never changed keep their start when
        it was a bake or the reference's maps, and are filled from the nearest
        changed texel when it was noise (base.texel_fill.fill_unseen). A UV
        layout outside [0,1] has no known gutters: only the latter applies.
        """
        chart = chart_mask(self.base.v_tex, self.base.t_tex_idx, tuple(self.config.texture_res))
        keep = self.config.texture_init != "random"
        filled = {name: fill_unseen(self.textures[name].base.detach(), self._start[name], chart,
                                    keep_start=keep) for name in self.names}
        disp = self.displacement
        if disp is not None:
            disp = fill_unseen(disp.detach(), torch.zeros_like(disp), chart, keep_start=True)
        material = dataclasses.replace(self.material(), kd=filled["kd"], ks=filled["ks"],
                                       normal=filled["normal"], displacement=disp,
                                       emissive=filled.get("emissive"))
        return self.base_mesh().replace(materials=(material,)).detach()

    def detail_mesh(self) -> Mesh:
        """The mesh that is rendered: the base, subdivided and displaced if enabled."""
        mesh = self.base_mesh()
        if self.displacement is None:
            return mesh
        from difflod.geometry.displace import displace
        from difflod.geometry.normals import with_normals
        from difflod.geometry.subdivide import subdivide

        fine = with_normals(subdivide(mesh, steps=self.config.subdivision))
        return displace(fine, self.displacement, scale=self.config.displacement)

    # ---- constraints and state ------------------------------------------------
    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep every texture in its valid range (after each optimizer step)."""
        for lvl in self.textures["kd"].levels:
            lvl.clamp_(0.0, 1.0)
        for lvl in self.textures["ks"].levels:
            lvl[..., 0].clamp_(0.0, 1.0)
            lvl[..., 1].clamp_(self.config.min_roughness, 1.0)
            lvl[..., 2].clamp_(0.0, 1.0)
        for lvl in self.textures["normal"].levels:
            lvl.clamp_(-1.0, 1.0)
        if "emissive" in self.textures:
            for lvl in self.textures["emissive"].levels:
                lvl.clamp_(min=0.0)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"v_pos": self.v_pos}
        for name, tex in self.textures.items():
            for i, lvl in enumerate(tex.levels):
                out[f"{name}.{i}"] = lvl
        if self.displacement is not None:
            out["displacement"] = self.displacement
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.tensors().items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        mine = self.tensors()
        if set(state) != set(mine):
            raise ValueError(f"checkpoint holds {sorted(state)}, expected {sorted(mine)}")
        for k, v in state.items():
            if v.shape != mine[k].shape:
                raise ValueError(f"checkpoint tensor {k} has shape {tuple(v.shape)}, "
                                 f"expected {tuple(mine[k].shape)}")
            mine[k].copy_(v)

    def finite(self) -> bool:
        """True when every parameter and gradient is finite."""
        for t in self.tensors().values():
            if not torch.isfinite(t).all():
                return False
            if t.grad is not None and not torch.isfinite(t.grad).all():
                return False
        return True
