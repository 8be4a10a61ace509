"""Mesh, Material and Skin: the data every part of difflod passes around.

All three are frozen dataclasses of torch tensors. They are never mutated:
transforms return a new object (`dataclasses.replace` or the helpers here).
Tensor layouts follow ../shared/DESIGN.md:

- positions float32 `[V,3]`, triangles int64 `[F,3]`;
- textures `[H,W,C]` float32, linear values (kd is base color in linear RGB,
  optionally with alpha as a 4th channel; ks = (1 - specular strength,
  roughness, metallic); normal = tangent-space normal in [-1,1], +Y up;
  occlusion = glTF's ambient occlusion, carried through, not shaded;
  emissive = emitted radiance in linear RGB, added unlit);
- UV in the glTF convention: (0,0) is the first texel of the first stored row.

A constant material factor is a 1x1 texture. Validation (`validate()`) checks
shapes, dtypes and index ranges and raises ValueError naming the field; the
readers turn that into an `InputFileError` naming the file.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

__all__ = ["TEXTURE_FIELDS", "AlphaMode", "Material", "Mesh", "Skin"]

#: the Material fields that hold textures
TEXTURE_FIELDS = ("kd", "ks", "normal", "displacement", "occlusion", "emissive")

AlphaMode = Literal["OPAQUE", "MASK", "BLEND"]
_ALPHA_MODES = ("OPAQUE", "MASK", "BLEND")


def _const_tex(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, len(values))


@dataclass(frozen=True)
class Material:
    """A PBR material in glTF's metallic-roughness model.

    Attributes:
        name: material name, as in the source file.
        kd: base color `[H,W,3]` (or `[H,W,4]` with alpha) float32, linear RGB.
        ks: `[H,W,3]` float32 (1 - specular strength, roughness, metallic):
            channel 0 is KHR_materials_specular's strength s as 1 - s, so 0
            (the default) is the plain glTF material (shading/bsdf.py).
        normal: tangent-space normal map `[H,W,3]` float32 in [-1,1], or None
            for the geometric normal.
        normal_scale: glTF normalTexture.scale (scales the XY of the map).
        displacement: `[H,W,1]` float32 displacement along the normal, or None.
        occlusion: `[H,W,1]` float32 glTF ambient occlusion (1 = open, strength
            applied), or None. It darkens ambient light only, which difflod's
            point light has none of: carried from input to output, never
            shaded or trained.
        emissive: `[H,W,3]` float32 emitted radiance, linear RGB, >= 0 and
            possibly above 1 (glTF emissiveTexture x emissiveFactor x
            KHR_materials_emissive_strength), or None for none. Shading adds
            it unlit: color = BSDF x light + emissive.
        alpha_mode: "OPAQUE", "MASK" (cutout at alpha_cutoff) or "BLEND".
        alpha_cutoff: threshold for MASK.
        double_sided: glTF doubleSided; difflod always shades two-sided, this
            is kept for export.
    """

    name: str = "default"
    kd: torch.Tensor = field(default_factory=lambda: _const_tex([0.5, 0.5, 0.5]))
    ks: torch.Tensor = field(default_factory=lambda: _const_tex([0.0, 0.5, 0.0]))
    normal: torch.Tensor | None = None
    normal_scale: float = 1.0
    displacement: torch.Tensor | None = None
    occlusion: torch.Tensor | None = None
    emissive: torch.Tensor | None = None
    alpha_mode: AlphaMode = "OPAQUE"
    alpha_cutoff: float = 0.5
    double_sided: bool = True

    @property
    def has_alpha(self) -> bool:
        return self.kd.shape[-1] == 4 and self.alpha_mode != "OPAQUE"

    def validate(self) -> Material:
        """Check shapes and values; return self. Raises ValueError naming the field."""
        for name, channels in (("kd", (3, 4)), ("ks", (3,)), ("normal", (3,)),
                               ("displacement", (1,)), ("occlusion", (1,)),
                               ("emissive", (3,))):
            tex = getattr(self, name)
            if tex is None:
                if name in ("kd", "ks"):
                    raise ValueError(f"material {self.name!r}: {name} is required")
                continue
            if not isinstance(tex, torch.Tensor) or tex.dim() != 3 or tex.shape[-1] not in channels:
                shape = tuple(tex.shape) if isinstance(tex, torch.Tensor) else type(tex).__name__
                raise ValueError(f"material {self.name!r}: {name} must be [H,W,{channels}] "
                                 f"float32, got {shape}")
            if tex.shape[0] < 1 or tex.shape[1] < 1:
                raise ValueError(f"material {self.name!r}: {name} texture is empty")
            if not _all_finite(tex.detach()):
                raise ValueError(f"material {self.name!r}: {name} holds NaN or Inf")
            if name == "emissive" and _min_value(tex.detach()) < 0.0:
                raise ValueError(f"material {self.name!r}: emissive holds negative radiance")
        if self.alpha_mode not in _ALPHA_MODES:
            raise ValueError(f"material {self.name!r}: alpha_mode must be one of "
                             f"{_ALPHA_MODES}, got {self.alpha_mode!r}")
        if not 0.0 <= self.alpha_cutoff <= 1.0:
            raise ValueError(f"material {self.name!r}: alpha_cutoff must be in [0,1]")
        return self

    def map_textures(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Material:
        """A copy with `fn` applied to every texture."""
        return dataclasses.replace(self, **{
            k: fn(getattr(self, k))
            for k in TEXTURE_FIELDS if getattr(self, k) is not None})

    def to(self, device: torch.device | str) -> Material:
        return self.map_textures(lambda t: t.to(device))


@dataclass(frozen=True)
class Skin:
    """Linear-blend-skinning data baked to keyframes.

    Attributes:
        times: `[N]` float32 keyframe times in seconds, increasing (N >= 1).
        matrices: `[N,J,4,4]` float32 skinning matrices per keyframe, i.e. joint
            world transform @ inverse bind matrix, mapping bind-pose positions
            (in the mesh's space) to posed positions.
        joint_names: names of the J joints, for reports.
    """

    times: torch.Tensor
    matrices: torch.Tensor
    joint_names: tuple[str, ...] = ()

    @property
    def num_joints(self) -> int:
        return int(self.matrices.shape[1])

    @property
    def start(self) -> float:
        """The first keyframe's time (seconds)."""
        return self._host_times[0]

    @property
    def duration(self) -> float:
        return self._host_times[-1] - self._host_times[0]

    @functools.cached_property
    def _host_times(self) -> list[float]:
        # copied to the host once per Skin, so posing a GPU mesh does not sync
        return self.times.tolist()

    def at(self, t: float) -> torch.Tensor:
        """Skinning matrices `[J,4,4]` at time t (clamped; linear between keys)."""
        times = self._host_times
        if len(times) == 1 or t <= times[0]:
            return self.matrices[0]
        if t >= times[-1]:
            return self.matrices[-1]
        i = bisect.bisect_left(times, float(t))  # times[i - 1] < t <= times[i]
        t0, t1 = times[i - 1], times[i]
        w = (t - t0) / max(t1 - t0, 1e-12)
        return self.matrices[i - 1] * (1.0 - w) + self.matrices[i] * w

    def at_times(self, t: torch.Tensor) -> torch.Tensor:
        """Skinning matrices `[B,J,4,4]` at the times `t` `[B]` (a float tensor on
        the skin's device), as `at` gives them one by one, with no host sync: a
        recorded training step poses with it."""
        times, mats = self.times, self.matrices
        t = t.to(times.dtype)
        if times.numel() == 1:
            return mats[0].expand(t.shape[0], *mats.shape[1:])
        t = torch.clamp(t, times[0], times[-1])
        # times[i - 1] <= t <= times[i], i in [1, N-1]
        i = torch.searchsorted(times, t).clamp(1, times.numel() - 1)
        t0, t1 = times[i - 1], times[i]
        w = ((t - t0) / (t1 - t0).clamp_min(1e-12))[:, None, None, None]
        return mats[i - 1] * (1.0 - w) + mats[i] * w

    def validate(self) -> Skin:
        if self.times.dim() != 1 or self.times.numel() < 1:
            raise ValueError("skin: times must be [N] with N >= 1")
        if self.matrices.dim() != 4 or self.matrices.shape[0] != self.times.numel() \
                or self.matrices.shape[2:] != (4, 4):
            raise ValueError(f"skin: matrices must be [N,J,4,4] with N={self.times.numel()}, "
                             f"got {tuple(self.matrices.shape)}")
        if self.times.numel() > 1 and not bool((self.times[1:] > self.times[:-1]).all()):
            raise ValueError("skin: keyframe times must increase")
        if not torch.isfinite(self.matrices).all():
            raise ValueError("skin: matrices hold NaN or Inf")
        return self


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh with separate index buffers per attribute, as in OBJ.

    Attributes:
        v_pos: `[V,3]` float32 positions.
        t_pos_idx: `[F,3]` int64 position indices.
        v_tex, t_tex_idx: `[T,2]` float32 UVs and `[F,3]` int64 indices, or None.
        v_nrm, t_nrm_idx: `[N,3]` float32 normals and `[F,3]` indices, or None.
        v_tng, t_tng_idx: `[N,4]` float32 tangents and `[F,3]` indices, or None;
            xyz is the tangent (direction of +u), w = +1 or -1 the handedness,
            so bitangent = w * cross(normal, tangent), as glTF's TANGENT.
        t_mat: `[F]` int64 material index per triangle, or None (all use 0).
        materials: the materials, at least one.
        v_joints: `[V,4]` int64 joint indices, v_weights `[V,4]` float32, or None.
        skin: the skin the joints index into, or None.
        v_color: `[V,4]` float32 linear RGBA per position (indexed by
            t_pos_idx, like v_pos), or None. glTF's COLOR_0: it multiplies the
            base color (and its alpha), baseColor = factor x texture x color.
    """

    v_pos: torch.Tensor
    t_pos_idx: torch.Tensor
    v_tex: torch.Tensor | None = None
    t_tex_idx: torch.Tensor | None = None
    v_nrm: torch.Tensor | None = None
    t_nrm_idx: torch.Tensor | None = None
    v_tng: torch.Tensor | None = None
    t_tng_idx: torch.Tensor | None = None
    t_mat: torch.Tensor | None = None
    materials: tuple[Material, ...] = (Material(),)
    v_joints: torch.Tensor | None = None
    v_weights: torch.Tensor | None = None
    skin: Skin | None = None
    v_color: torch.Tensor | None = None

    # ---- facts -------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return int(self.v_pos.shape[0])

    @property
    def num_triangles(self) -> int:
        return int(self.t_pos_idx.shape[0])

    @property
    def device(self) -> torch.device:
        return self.v_pos.device

    @property
    def has_uv(self) -> bool:
        return self.v_tex is not None and self.t_tex_idx is not None

    def aabb(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Axis-aligned bounds `([3], [3])` of the positions (zeros if empty)."""
        if self.num_vertices == 0:
            z = torch.zeros(3, dtype=torch.float32, device=self.device)
            return z, z
        return self.v_pos.min(dim=0).values, self.v_pos.max(dim=0).values

    def material_ids(self) -> torch.Tensor:
        """`[F]` int64 material index per triangle (zeros when t_mat is None)."""
        if self.t_mat is None:
            return torch.zeros(self.num_triangles, dtype=torch.int64, device=self.device)
        return self.t_mat

    # ---- transforms --------------------------------------------------------
    def replace(self, **changes: object) -> Mesh:
        return dataclasses.replace(self, **changes)

    def map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Mesh:
        """A copy with `fn` applied to every tensor: attributes, textures, skin."""
        changes: dict[str, object] = {
            f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)}
        changes["materials"] = tuple(m.map_textures(fn) for m in self.materials)
        if self.skin is not None:
            changes["skin"] = dataclasses.replace(self.skin, times=fn(self.skin.times),
                                                  matrices=fn(self.skin.matrices))
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str) -> Mesh:
        return self.map_tensors(lambda t: t.to(device))

    def detach(self) -> Mesh:
        """A copy whose tensors carry no autograd history."""
        return self.map_tensors(torch.Tensor.detach)

    def clone(self) -> Mesh:
        """A detached deep copy: later in-place changes to this mesh's tensors
        (an optimizer step) do not reach it."""
        return self.map_tensors(lambda t: t.detach().clone())

    # ---- validation --------------------------------------------------------
    def validate(self) -> Mesh:
        """Check shapes, dtypes, index ranges and finiteness; return self.

        Raises:
            ValueError: naming the first field that is wrong and what was expected.
        """
        _check_array("v_pos", self.v_pos, 3, torch.float32)
        _check_index("t_pos_idx", self.t_pos_idx, self.num_vertices, self.num_triangles)
        if not _all_finite(self.v_pos.detach()):
            raise ValueError("v_pos holds NaN or Inf coordinates")
        for attr, idx, width in (("v_tex", "t_tex_idx", 2), ("v_nrm", "t_nrm_idx", 3),
                                 ("v_tng", "t_tng_idx", 4)):
            values, index = getattr(self, attr), getattr(self, idx)
            if (values is None) != (index is None):
                raise ValueError(f"{attr} and {idx} must be given together")
            if values is not None:
                _check_array(attr, values, width, torch.float32)
                _check_index(idx, index, int(values.shape[0]), self.num_triangles)
                if not _all_finite(values.detach()):
                    raise ValueError(f"{attr} holds NaN or Inf")
        if self.v_color is not None:
            if not isinstance(self.v_color, torch.Tensor) \
                    or self.v_color.shape != (self.num_vertices, 4) \
                    or self.v_color.dtype != torch.float32:
                got = (f"{tuple(self.v_color.shape)} {self.v_color.dtype}"
                       if isinstance(self.v_color, torch.Tensor) else type(self.v_color).__name__)
                raise ValueError(f"v_color must be [{self.num_vertices},4] float32, got {got}")
            if not _all_finite(self.v_color.detach()):
                raise ValueError("v_color holds NaN or Inf")
        if not self.materials:
            raise ValueError("a mesh needs at least one material")
        for m in self.materials:
            m.validate()
        if self.t_mat is not None:
            if self.t_mat.shape != (self.num_triangles,) or self.t_mat.dtype != torch.int64:
                raise ValueError(f"t_mat must be [{self.num_triangles}] int64, "
                                 f"got {tuple(self.t_mat.shape)} {self.t_mat.dtype}")
            if self.num_triangles and (int(self.t_mat.min()) < 0
                                       or int(self.t_mat.max()) >= len(self.materials)):
                raise ValueError(f"t_mat indexes material {int(self.t_mat.max())} but the "
                                 f"mesh has {len(self.materials)}")
        if (self.v_joints is None) != (self.v_weights is None):
            raise ValueError("v_joints and v_weights must be given together")
        if self.v_joints is not None:
            assert self.v_weights is not None
            if self.v_joints.shape != (self.num_vertices, 4) or self.v_joints.dtype != torch.int64:
                raise ValueError(f"v_joints must be [{self.num_vertices},4] int64")
            _check_array("v_weights", self.v_weights, 4, torch.float32)
            if self.skin is None:
                raise ValueError("v_joints given without a skin")
            self.skin.validate()
            if self.num_vertices and (int(self.v_joints.min()) < 0
                                      or int(self.v_joints.max()) >= self.skin.num_joints):
                raise ValueError(f"v_joints index joint {int(self.v_joints.max())} but the "
                                 f"skin has {self.skin.num_joints}")
        return self


def _all_finite(t: torch.Tensor) -> bool:
    """isfinite().all(), through numpy for CPU tensors (much cheaper for small
    checks than torch's thread pool on a busy machine)."""
    if t.device.type == "cpu" and not t.requires_grad:
        import numpy as np

        return bool(np.isfinite(t.numpy()).all())
    return bool(torch.isfinite(t).all())


def _min_value(t: torch.Tensor) -> float:
    if t.device.type == "cpu" and not t.requires_grad:
        return float(t.numpy().min())
    return float(t.min())


def _min_max(t: torch.Tensor) -> tuple[int, int]:
    if t.device.type == "cpu":
        a = t.numpy()
        return int(a.min()), int(a.max())
    return int(t.min()), int(t.max())


def _check_array(name: str, t: object, width: int, dtype: torch.dtype) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[1] != width or t.dtype != dtype:
        got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be [N,{width}] {dtype}, got {got}")


def _check_index(name: str, t: object, count: int, num_tris: int) -> None:
    if not isinstance(t, torch.Tensor) or t.shape != (num_tris, 3) or t.dtype != torch.int64:
        got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be [{num_tris},3] int64, got {got}")
    lo, hi = _min_max(t) if num_tris else (0, 0)
    if num_tris and (lo < 0 or hi >= count):
        bad = hi if hi >= count else lo
        raise ValueError(f"{name} holds index {bad}, out of range for {count} entries")
