"""MTL material libraries: read into `Material`s, write from them.

Mapping (compatible with the files nvdiffmodeling reads and writes):

- kd: `map_Kd` image if given (sRGB in the file, linear inside; it replaces
  `Kd`), else the `Kd` value (also taken as sRGB, as nvdiffmodeling does).
  Alpha: `map_d` (its alpha channel if it has one, else its first channel),
  else the alpha channel of `map_Kd`, else `d` (or `1 - Tr`). A material whose
  alpha is anywhere below 1 gets a 4-channel kd and, since MTL has no alpha
  mode, one from the alpha itself (`_alpha_mode`): "BLEND" where the texels
  that are not opaque are mostly partly transparent (a glass, `d 0.3`), else
  "MASK" with cutoff 0.5 (a cut-out), unless the material carries the comment
  difflod writes after `newmtl` (ALPHA_MODE_COMMENT, "# difflod alpha_mode
  MASK 0.5"), whose mode and cutoff are taken. The writer writes the alpha as
  it is, with that comment, so glass and cut-outs come back as they were.
- ks = (occlusion, roughness, metallic), linear: `map_Ks` texels, else the
  `Ks` values, else (0, Pr, Pm) from the PBR extension (missing Pr: derived
  from `Ns` when Ns is given, else 0.5; missing Pm: 0), else the Material
  default (0, 0.5, 0). `Ns` is a Blinn-Phong exponent; the microfacet
  distribution with the same peak has alpha = sqrt(2 / (Ns + 2)) (Walter et
  al. 2007), and roughness is sqrt(alpha) (glTF's alpha = roughness^2), so
  roughness = (2 / (Ns + 2)) ** 0.25, the conversion trimesh's OBJ importer uses.
- normal: `norm`, `bump` or `map_Bump` image in [0,1] -> n * 2 - 1; its
  `-bm` option -> normal_scale. A 1-channel bump image is a height map, which
  difflod does not convert: the material then gets no normal map.
- displacement: `disp` image, first channel, as stored (linear).
- emissive (the common extension; nvdiffmodeling ignores both statements):
  `map_Ke` image (sRGB in the file, linear inside, times the gain of its
  `-mm base gain` option plus the base, so values above 1 survive 8-bit
  files; it replaces `Ke`), else the `Ke` values, taken as linear radiance
  (Blender writes emission color x strength there, which may exceed 1).
  All zero means no emissive (None).

Texture statements accept the standard options (-bm, -blendu, -o, -s, ...);
the rest of the line is the file name, so names may contain spaces. Paths
are relative to the MTL's folder, backslashes are taken as separators, and a
path that leads outside the model's folder is refused unless
`ReadLimits.allow_outside_paths` (difflod.io.paths). Texture files are held to
the `ReadLimits` too (file size, picture size), before they are decoded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from difflod.errors import InputFileError
from difflod.io.image import linear_to_srgb, read_image, srgb_to_linear
from difflod.io.limits import ReadLimits
from difflod.io.paths import resolve_reference
from difflod.mesh import Material

__all__ = ["material_files", "mtl_text", "read_mtl", "resolve_inside"]

# texture option -> (min, max) number of arguments
_TEX_OPTIONS: dict[str, tuple[int, int]] = {
    "-blendu": (1, 1), "-blendv": (1, 1), "-bm": (1, 1), "-boost": (1, 1), "-cc": (1, 1),
    "-clamp": (1, 1), "-imfchan": (1, 1), "-mm": (2, 2), "-o": (1, 3), "-s": (1, 3),
    "-t": (1, 3), "-texres": (1, 1), "-type": (1, 1),
}
_TEX_KEYS = {"map_kd": "map_kd", "map_ks": "map_ks", "map_d": "map_d", "bump": "bump",
             "map_bump": "bump", "norm": "bump", "disp": "disp", "map_ke": "map_ke"}


def resolve_inside(root: Path, base: Path, name: str, source: Path, lineno: int,
                   limits: ReadLimits) -> Path:
    """Resolve file `name` (from `source` line `lineno`) against folder `base`.

    Raises InputFileError if the result lies outside `root` (the model's folder),
    unless `limits.allow_outside_paths`.
    """
    def fail(message: str) -> InputFileError:
        return InputFileError(source, f"line {lineno}: path {message}")

    return resolve_reference(name.strip().strip('"'), base, root, limits.allow_outside_paths,
                             fail)


def _texture_args(rest: str, source: Path, lineno: int) -> tuple[dict[str, list[str]], str]:
    """Split a texture statement's arguments into (options, file name)."""
    tokens = [(m.group(), m.start()) for m in re.finditer(r"\S+", rest)]
    opts: dict[str, list[str]] = {}
    i = 0
    while i < len(tokens) and tokens[i][0].startswith("-") and not _is_number(tokens[i][0]):
        key = tokens[i][0].lower()
        lo, hi = _TEX_OPTIONS.get(key, (0, 3))
        args: list[str] = []
        i += 1
        while i < len(tokens) and len(args) < hi and (
                _is_number(tokens[i][0]) or (len(args) < lo and key in ("-blendu", "-blendv",
                                                                        "-clamp", "-cc",
                                                                        "-imfchan", "-type"))):
            args.append(tokens[i][0])
            i += 1
        if len(args) < lo:
            raise InputFileError(source, f"line {lineno}: texture option {key} needs {lo} "
                                         f"argument(s)")
        opts[key] = args
    if i >= len(tokens):
        raise InputFileError(source, f"line {lineno}: texture statement has no file name")
    return opts, rest[tokens[i][1]:].strip()


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


#: the comment difflod writes after `newmtl` for a material with alpha, and its
#: reader honours: "# difflod alpha_mode MASK 0.5" (or BLEND); other readers skip it
ALPHA_MODE_COMMENT = "# difflod alpha_mode"


@dataclass
class _Raw:
    name: str
    lineno: int
    values: dict[str, list[float]] = field(default_factory=dict)
    alpha_mode: tuple[str, float] | None = None  # from ALPHA_MODE_COMMENT
    maps: dict[str, tuple[Path, int, dict[str, list[str]]]] = field(default_factory=dict)


_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _floats(args: list[str], n: int, source: Path, lineno: int, key: str) -> list[float]:
    try:
        vals = [float(a) for a in args[:n]]
    except ValueError:
        raise InputFileError(source, f"line {lineno}: {key} expects numbers, "
                                     f"got {' '.join(args)!r}") from None
    if not vals:
        raise InputFileError(source, f"line {lineno}: {key} needs a value")
    if not all(math.isfinite(v) for v in vals):
        raise InputFileError(source, f"line {lineno}: {key} holds NaN or Inf")
    if not all(abs(v) <= _FLOAT32_MAX for v in vals):
        raise InputFileError(source, f"line {lineno}: {key} holds a number beyond the "
                                     f"float32 range (±3.4e38)")
    if len(vals) < n:  # "Kd 0.5" means grey
        vals = vals + [vals[-1]] * (n - len(vals))
    return vals


def _parse(path: Path, root: Path, limits: ReadLimits) -> list[_Raw]:
    limits.check_file(path, "material library")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "material library not found") from None
    except OSError as e:
        raise InputFileError(path, f"cannot read material library: {e.strerror or e}") from None
    raws: list[_Raw] = []
    cur: _Raw | None = None
    lines = data.replace(b"\\\r\n", b" ").replace(b"\\\n", b" ").split(b"\n")
    for lineno, raw in enumerate(lines, start=1):
        raw = raw.strip()
        if raw.startswith(ALPHA_MODE_COMMENT.encode()) and cur is not None:
            cur.alpha_mode = _alpha_mode_comment(raw) or cur.alpha_mode
        if not raw or raw.startswith(b"#"):
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("latin-1")
        parts = line.split(None, 1)
        if not parts:  # blank but for characters str.split counts as space (\x1c ...)
            continue
        key = parts[0].lower()
        rest = parts[1].strip() if len(parts) > 1 else ""
        if key == "newmtl":
            if not rest:
                raise InputFileError(path, f"line {lineno}: newmtl needs a name")
            cur = _Raw(rest, lineno)
            raws.append(cur)
            continue
        if key not in ("kd", "ks", "ke", "ns", "d", "tr", "pr", "pm") and key not in _TEX_KEYS:
            continue  # Ka, Ni, illum, ... do not map onto difflod's material
        if cur is None:
            raise InputFileError(path, f"line {lineno}: {parts[0]} before any newmtl")
        if key in _TEX_KEYS:
            opts, name = _texture_args(rest, path, lineno)
            cur.maps[_TEX_KEYS[key]] = (resolve_inside(root, path.parent, name, path, lineno,
                                                       limits),
                                        lineno, opts)
        else:
            n = 3 if key in ("kd", "ks", "ke") else 1
            cur.values[key] = _floats(rest.split(), n, path, lineno, parts[0])
    return raws


def _alpha_mode_comment(raw: bytes) -> tuple[str, float] | None:
    """(mode, cutoff) of an ALPHA_MODE_COMMENT line, or None where it is not one
    difflod writes (it is a comment: anything else in it is ignored)."""
    words = raw[len(ALPHA_MODE_COMMENT):].decode("latin-1").split()
    if len(words) != 2 or words[0] not in ("MASK", "BLEND"):
        return None
    try:
        cutoff = float(words[1])
    except ValueError:
        return None
    return (words[0], cutoff) if 0.0 <= cutoff <= 1.0 else None


def _load_tex(raw: _Raw, key: str, mtl: Path, limits: ReadLimits) -> torch.Tensor:
    file, lineno, _ = raw.maps[key]
    if not file.is_file():
        raise InputFileError(mtl, f"line {lineno}: texture {file.name!r} not found ({file})")
    try:
        return read_image(file, limits)
    except InputFileError as e:
        raise InputFileError(mtl, f"line {lineno}: texture {file.name!r}: {e.detail}") from None


def _rgb(img: torch.Tensor) -> torch.Tensor:
    c = img.shape[-1]
    return img[..., :1].expand(-1, -1, 3).clone() if c <= 2 else img[..., :3]


def _resize(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(img.shape[:2]) == hw:
        return img
    out = F.interpolate(img.permute(2, 0, 1)[None], size=hw, mode="bilinear", align_corners=False)
    return out[0].permute(1, 2, 0).contiguous()


def _alpha_mode(alpha: torch.Tensor) -> str:
    """"BLEND" or "MASK" for an alpha (`[H,W,1]`, some value below 1): BLEND when
    most of the texels that are not opaque (below 0.95) are partly transparent
    (above 0.05), as a glass or a `d 0.3` is; MASK when they are mostly clear,
    as a cut-out's are (its soft edges are a few texels)."""
    a = alpha.reshape(-1)
    see_through = a < 0.95
    partial = see_through & (a > 0.05)
    return "BLEND" if 2 * int(partial.sum()) >= int(see_through.sum()) else "MASK"


def _material(raw: _Raw, mtl: Path, limits: ReadLimits) -> Material:
    vals = raw.values
    alpha: torch.Tensor | None = None
    if "map_kd" in raw.maps:
        img = _load_tex(raw, "map_kd", mtl, limits)
        kd = srgb_to_linear(_rgb(img))
        if img.shape[-1] in (2, 4):
            alpha = img[..., -1:]
    else:
        kd = srgb_to_linear(torch.tensor(vals.get("kd", [0.5, 0.5, 0.5]),
                                         dtype=torch.float32).reshape(1, 1, 3))
    if "map_d" in raw.maps:
        img = _load_tex(raw, "map_d", mtl, limits)
        alpha = img[..., -1:] if img.shape[-1] in (2, 4) else img[..., :1]
    elif alpha is None and ("d" in vals or "tr" in vals):
        a = vals["d"][0] if "d" in vals else 1.0 - vals["tr"][0]
        alpha = torch.full((1, 1, 1), float(a), dtype=torch.float32)
    alpha_mode, cutoff = "OPAQUE", 0.5
    if alpha is not None and bool((alpha < 1.0).any()):
        hw = (max(kd.shape[0], alpha.shape[0]), max(kd.shape[1], alpha.shape[1]))
        kd = torch.cat([_resize(kd, hw), _resize(alpha, hw).clamp(0, 1)], dim=-1)
        alpha_mode, cutoff = raw.alpha_mode or (_alpha_mode(alpha), 0.5)

    if "map_ks" in raw.maps:
        ks = _rgb(_load_tex(raw, "map_ks", mtl, limits)).contiguous()
    elif "ks" in vals:
        ks = torch.tensor(vals["ks"], dtype=torch.float32).reshape(1, 1, 3)
    elif "pr" in vals or "pm" in vals or "ns" in vals:
        rough = vals["pr"][0] if "pr" in vals else (
            (2.0 / (max(vals["ns"][0], 0.0) + 2.0)) ** 0.25 if "ns" in vals else 0.5)
        metal = vals["pm"][0] if "pm" in vals else 0.0
        ks = torch.tensor([0.0, rough, metal], dtype=torch.float32).reshape(1, 1, 3)
    else:
        ks = Material().ks

    normal, scale = None, 1.0
    if "bump" in raw.maps:
        img = _load_tex(raw, "bump", mtl, limits)
        if img.shape[-1] >= 3:
            normal = img[..., :3] * 2.0 - 1.0
            _, lineno, opts = raw.maps["bump"]
            if "-bm" in opts:
                scale = _floats(opts["-bm"], 1, mtl, lineno, "-bm")[0]
    disp = _load_tex(raw, "disp", mtl, limits)[..., :1].contiguous() if "disp" in raw.maps else None
    mat = Material(name=raw.name, kd=kd.contiguous(), ks=ks, normal=normal, normal_scale=scale,
                   displacement=disp, emissive=_emissive(raw, mtl, limits),
                   alpha_mode=alpha_mode, alpha_cutoff=cutoff)
    try:
        return mat.validate()
    except ValueError as e:
        raise InputFileError(mtl, f"line {raw.lineno}: {e}") from None


def _emissive(raw: _Raw, mtl: Path, limits: ReadLimits) -> torch.Tensor | None:
    """map_Ke (sRGB, then base + gain x texel from -mm) or Ke (linear); None if all 0."""
    if "map_ke" in raw.maps:
        _, lineno, opts = raw.maps["map_ke"]
        base, gain = _floats(opts["-mm"], 2, mtl, lineno, "-mm") if "-mm" in opts else (0.0, 1.0)
        ke = srgb_to_linear(_rgb(_load_tex(raw, "map_ke", mtl, limits))) * gain + base
        ke = ke.contiguous()
    elif "ke" in raw.values:
        ke = torch.tensor(raw.values["ke"], dtype=torch.float32).reshape(1, 1, 3)
    else:
        return None
    if bool((ke < 0).any()):
        line = raw.maps["map_ke"][1] if "map_ke" in raw.maps else raw.lineno
        raise InputFileError(mtl, f"line {line}: emissive (Ke / map_Ke) is negative in "
                                  f"material {raw.name!r}")
    return ke if bool((ke > 0).any()) else None


def read_mtl(path: Path, root: Path, limits: ReadLimits | None = None) -> dict[str, Material]:
    """Read an MTL file into materials by name (later definitions win).

    Args:
        path: the .mtl file. root: the model's folder; textures must lie inside it
            (unless `limits.allow_outside_paths`).
        limits: file and texture sizes allowed (default `ReadLimits()`).
    Raises:
        InputFileError naming the file and line for missing/bad files or values.
    """
    limits = ReadLimits() if limits is None else limits
    return {raw.name: _material(raw, path, limits) for raw in _parse(path, root, limits)}


# ---- writing -------------------------------------------------------------------

def material_files(index: int) -> dict[str, str]:
    """Texture file names for material `index`: texture_kd.png, ... (suffix _<i> for i > 0)."""
    sfx = "" if index == 0 else f"_{index}"
    return {k: f"texture_{k}{sfx}.png" for k in ("kd", "ks", "n", "d", "ke")}


def _is_const(t: torch.Tensor) -> bool:
    return t.shape[0] == 1 and t.shape[1] == 1


class _Images:
    """The images of an MTL: a texture that several materials share (the same
    tensor, stored the same way, e.g. the OPAQUE copy that base/opaque_split.py
    makes of a BLEND atlas) is written once, under the first material's name."""

    def __init__(self) -> None:
        self.files: list[tuple[str, torch.Tensor, int]] = []
        self._names: dict[tuple[int, str], str] = {}

    def add(self, source: torch.Tensor, how: str, name: str,
            stored: Callable[[], torch.Tensor], bits: int = 8) -> str:
        """The file name of `source` stored as `how` (`stored()` makes the pixels
        on the first call); `name` is used when it is new."""
        key = (id(source), how)
        if key not in self._names:
            self._names[key] = name
            self.files.append((name, stored(), bits))
        return self._names[key]


def mtl_text(materials: list[tuple[str, Material]]) -> tuple[str, list[tuple[str, torch.Tensor,
                                                                                int]]]:
    """MTL text for (unique name, material) pairs, and the images to write.

    Returns:
        (text, images): images are (file name, `[H,W,C]` float32 in [0,1] as stored, bits).
    """
    out: list[str] = ["# difflod material library\n"]
    images = _Images()
    for i, (name, m) in enumerate(materials):
        files = material_files(i)
        out.append(f"\nnewmtl {name}\nbsdf pbr\n")  # nvdiffmodeling/nvdiffrec require it
        has_alpha = m.kd.shape[-1] == 4 and m.alpha_mode != "OPAQUE"
        if has_alpha:  # MTL has no alpha mode: difflod's reader takes it from here
            out.append(f"{ALPHA_MODE_COMMENT} {m.alpha_mode} {m.alpha_cutoff:g}\n")
        if _is_const(m.kd):
            c = _kd_stored(m, has_alpha)[0, 0].tolist()
            out.append("Kd {:.6f} {:.6f} {:.6f}\n".format(*c[:3]))
            if has_alpha:
                out.append(f"d {c[3]:.6f}\n")
        else:
            how = f"{m.alpha_mode} {m.alpha_cutoff}" if has_alpha else "rgb"
            kd_file = images.add(m.kd, how, files["kd"],
                                 lambda m=m, a=has_alpha: _kd_stored(m, a))
            out.append(f"map_Kd {kd_file}\n")
            if has_alpha:
                out.append(f"map_d {kd_file}\n")
        ks = m.ks.detach().float().cpu()
        if _is_const(ks):
            o, r, mt = ks[0, 0].tolist()
            out.append(f"Ks {o:.6f} {r:.6f} {mt:.6f}\nPr {r:.6f}\nPm {mt:.6f}\n")
        else:
            file = images.add(m.ks, "ks", files["ks"], lambda ks=ks: ks.clamp(0, 1))
            out.append(f"map_Ks {file}\n")
        if m.normal is not None:
            n = m.normal.detach().float().cpu()
            file = images.add(m.normal, "n", files["n"], lambda n=n: (n * 0.5 + 0.5).clamp(0, 1))
            bm = f"-bm {m.normal_scale:.6g} " if m.normal_scale != 1.0 else ""
            out.append(f"bump {bm}{file}\n")
        if m.displacement is not None:
            d = m.displacement
            file = images.add(d, "d", files["d"],
                              lambda d=d: d.detach().float().cpu().clamp(0, 1), bits=16)
            out.append(f"disp {file}\n")
        if m.emissive is not None:
            out.append(_emissive_text(m.emissive, files["ke"], images))
    return "".join(out), images.files


def _kd_stored(m: Material, has_alpha: bool) -> torch.Tensor:
    """kd as the file stores it: sRGB, and with `has_alpha` the alpha as it is
    (MASK too: its soft edges place the cut between texels, as filtering then
    the cutoff draws it; binarized, a trained shrub of cards lost 0.64 dB)."""
    kd = m.kd.detach().float().cpu()
    srgb = _srgb8(kd[..., :3])
    if not has_alpha:
        return srgb
    return torch.cat([srgb, kd[..., 3:].clamp(0, 1)], dim=-1)


def _emissive_text(emissive: torch.Tensor, file: str, images: _Images) -> str:
    """Ke (constant, linear) or map_Ke (sRGB; -mm 0 peak when the peak exceeds 1)."""
    e = emissive.detach().float().cpu().clamp(min=0)
    peak = float(e.max())
    if not peak > 0.0:
        return ""
    if _is_const(e):
        return "Ke {:.6f} {:.6f} {:.6f}\n".format(*e[0, 0].tolist())
    gain = max(peak, 1.0)
    file = images.add(emissive, "ke", file, lambda: _srgb8(e / gain))
    mm = f"-mm 0 {gain:.9g} " if gain > 1.0 else ""
    return f"Ke 1.000000 1.000000 1.000000\nmap_Ke {mm}{file}\n"


def _srgb8(x: torch.Tensor) -> torch.Tensor:
    """linear -> sRGB, clamped to [0,1] for 8-bit storage."""
    return linear_to_srgb(x.clamp(0, 1)).clamp(0, 1)
