"""The run configuration: one validated, immutable object, built once.

`TrainConfig` holds every setting of a training run. It accepts
nvdiffmodeling's JSON keys unchanged (so its config files run as they are)
plus difflod's own keys. It is built by `load_config` from a JSON file and
command-line overrides, validated field by field, and then only read.

Unknown keys and bad values raise `ConfigError` naming the key, the source
(file or command line) and what is valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflod.errors import ConfigError

__all__ = [
    "BACKENDS",
    "BACKGROUNDS",
    "BASE_METHODS",
    "COMPILE_MODES",
    "INIT_TEXTURES",
    "LOSSES",
    "READ_LIMIT_KEYS",
    "SKIPPABLE",
    "TrainConfig",
    "load_config",
    "parse_overrides",
]

BACKGROUNDS = ("checker", "black", "white", "random", "solid")
LOSSES = ("logl1", "logl2", "mse", "smape", "relativel2")
SKIPPABLE = ("position", "normal", "kd", "ks", "displacement", "emissive")
BACKENDS = ("auto", "cpu", "cuda", "torch")
#: `compile` (shading through torch.compile; "auto" is off for now) and
#: `cuda_graph` (the step recorded as a CUDA graph; "auto" records where it can)
COMPILE_MODES = ("auto", "on", "off")
INIT_TEXTURES = ("reference", "random", "base")
BASE_METHODS = ("auto", "qem", "remesh", "cards")
#: `layers: null` with a BLEND or MASK reference: the evaluation's layer count
#: (evaluate.py), so a glass shell's front, what it holds and its back side all
#: show, and a cut-out's clear texels show the leaves behind them
AUTO_LAYERS = 4
#: `spp: null` with a MASK reference: cut-out foliage at one sample per pixel is
#: noise the candidate cannot match (a shrub's leaves are 1-2 pixels at 128^2):
#: training moved away from a good start (-0.5 dB in 200 steps); at 2, +1.3 dB
AUTO_SPP = 2
#: the size limits of difflod.io.limits.ReadLimits, settable per run
READ_LIMIT_KEYS = ("max_vertices", "max_triangles", "max_texture_size", "max_file_bytes",
                   "max_animation_matrices")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one optimization run (nvdiffmodeling's keys, then difflod's).

    Paths are kept as given; `resolve_path` makes them absolute against the
    folder the run starts in, as nvdiffmodeling does.
    """

    # --- nvdiffmodeling's keys -------------------------------------------------
    iter: int = 5000
    batch: int = 1
    # samples per pixel (supersampling, both renders); null: AUTO_SPP where the
    # reference has a MASK material, else 1 (spp_for)
    spp: int | None = None
    # depth-peeled layers per render; null: AUTO_LAYERS where the reference has a
    # BLEND or MASK material (glass and cut-outs show what is behind them), else 1
    # (layers_for)
    layers: int | None = None
    train_res: int = 512
    random_train_res: bool = False
    display_res: int | None = None
    texture_res: tuple[int, int] = (1024, 1024)
    display_interval: int = 0
    save_interval: int = 1000
    learning_rate: float | tuple[float, float] | None = None
    light_power: float = 5.0
    min_roughness: float = 0.08
    subdivision: int = 0
    displacement: float = 0.15
    custom_mip: bool = False
    random_textures: bool = False
    laplacian_factor: float | None = None
    relative_laplacian: bool = False
    # > 0: positions trained through u = (I + lambda L) x (Nicolet et al. 2021,
    # geometry.smooth_positions), lambda = position_smoothing; 0: directly
    position_smoothing: float = 0.0
    background: str = "checker"
    loss: str = "logl1"
    out_dir: str | None = None
    ref_mesh: str | None = None
    base_mesh: str | None = None
    camera_eye: tuple[float, float, float] = (0.0, 0.0, 3.5)
    camera_up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    skip_train: tuple[str, ...] = ()
    mtl_override: str | None = None
    animate: bool = False
    # --- difflod's own keys ----------------------------------------------------
    backend: str = "auto"
    device: str = "auto"
    # the training step's shading, normals and tangents through torch.compile's
    # fused kernels: "on" (a GPU with Triton; on a CPU Inductor needs a C++
    # compiler), "off" = eager torch; "auto" is off until measured to pay
    # (optimize.trainer.compile_shading)
    compile: str = "auto"
    # the training step recorded once as a CUDA graph and replayed (optimize.graphed):
    # "on" = recorded (an error where it cannot be: optimize.graphed.graph_blocker),
    # "off" = eager steps; "auto" records wherever graph_blocker finds no reason not to
    cuda_graph: str = "auto"
    seed: int = 0
    eval_views: int = 64
    eval_res: int = 512
    # behind the training renders (scene.views.background): "solid", one random
    # colour per view, scored better in three.js than per-pixel noise ("random")
    # on each asset measured, most on a smooth outline (the figures: README)
    train_background: str = "solid"
    # > 1: each training view shows a random window of the full view, magnified
    # by up to this factor (scene.views.sample_views zoom): closer looks teach
    # what the training resolution cannot resolve, at no extra pixel cost; 1 = off
    train_zoom: float = 1.0
    # samples per pixel of the reference's training renders only (the candidate
    # keeps `spp`); null: `spp`. A detailed reference's triangles are smaller
    # than a pixel, and the antialiasing (render.antialias) blends a pixel pair
    # only where the crossing edge belongs to a triangle seen at one of its two
    # centres (5% of a 20k-triangle sphere's outline pairs, 87% at 200
    # triangles), so at one sample its outline is a staircase. 2 (4 samples)
    # measured on the CPU proxy (vcolor, beacon, glass at 5%, 500 iterations at
    # 256^2, three.js gain over qem_bake): +0.24 dB on the smooth vcolor, -0.25
    # on beacon and -0.10 on glass, whose shading the extra samples average
    # where three.js's MSAA shades once a pixel; the step took 1.6-2x as long
    reference_spp: int | None = None
    # learning rates x 10^(-lr_decay * iteration); null: the rate that brings them
    # to a tenth at the last iteration (optimize.schedule; simplify's default)
    lr_decay: float | None = 0.0002
    log_interval: int = 10
    # where the trainable textures start: the reference's material resized
    # (nvdiffmodeling), noise ("random", as random_textures), or the base
    # mesh's own material (e.g. a bake onto its UV atlas, as `difflod simplify`)
    init_textures: str = "reference"
    # the base mesh `difflod simplify` trains: "qem" (QEM + atlas + bake, as
    # qem_bake.glb), "remesh" (an even remesh of a closed surface + atlas +
    # bake, base/remesh.py), "cards" (crossed alpha-tested cards,
    # base/cards.py), or "auto": cards where MASK cut-outs carry most of the
    # surface (foliage), else the remesh where it keeps the shape about as
    # well as QEM at the budget (measured on a smooth sphere: +1.1 to +1.5 dB
    # in three.js), else QEM
    base_method: str = "auto"
    # keep checkpoint.pt once the run has finished (to continue it later with a
    # larger 'iter'); by default a finished run deletes it, as only --resume of
    # an unfinished run needs it
    keep_checkpoint: bool = False
    name: str | None = field(default=None)
    # what a model file may declare before it is refused, and whether its file
    # references may leave its folder (difflod.io.limits.ReadLimits, whose
    # defaults apply where these are null)
    max_vertices: int | None = None
    max_triangles: int | None = None
    max_texture_size: int | None = None
    max_file_bytes: int | None = None
    max_animation_matrices: int | None = None
    allow_outside_paths: bool = False

    # ------------------------------------------------------------------------
    def layers_for(self, alpha: bool) -> int:
        """The layers a run renders: `layers`, or when null AUTO_LAYERS if the
        reference has a BLEND or MASK material (`alpha`) and 1 if not."""
        if self.layers is not None:
            return self.layers
        return AUTO_LAYERS if alpha else 1

    def spp_for(self, mask: bool) -> int:
        """The samples per pixel a run renders: `spp`, or when null AUTO_SPP if the
        reference has a MASK material (`mask`) and 1 if not."""
        if self.spp is not None:
            return self.spp
        return AUTO_SPP if mask else 1

    def reference_spp_for(self, spp: int) -> int:
        """The samples per pixel of the reference's training renders, given the
        run's resolved `spp`: `reference_spp`, or when null `spp`."""
        return spp if self.reference_spp is None else self.reference_spp

    @property
    def lr_positions(self) -> float:
        lr = 0.01 if self.learning_rate is None else self.learning_rate
        return float(lr[0]) if isinstance(lr, tuple) else float(lr)

    @property
    def lr_textures(self) -> float:
        lr = 0.01 if self.learning_rate is None else self.learning_rate
        return float(lr[1]) if isinstance(lr, tuple) else float(lr)

    @property
    def render_backend(self) -> str | None:
        """The `backend` argument of the render ops: the config's backend, None for "auto"."""
        return self.backend if self.backend != "auto" else None

    @property
    def texture_init(self) -> str:
        """Where the textures start: "random" when random_textures, else init_textures."""
        return "random" if self.random_textures else self.init_textures

    @property
    def resolved_display_res(self) -> int:
        return self.display_res if self.display_res is not None else self.train_res

    @property
    def run_name(self) -> str:
        return self.name or self.out_dir or "run"

    def output_dir(self, root: Path | str = "out") -> Path:
        """nvdiffmodeling's rule: out_dir is a name under out/."""
        return Path(root) / (self.out_dir or f"cube_{self.train_res}")

    def replace(self, **changes: Any) -> TrainConfig:
        return _from_mapping({**self.to_dict(), **changes}, "replace()")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


#: keys whose pair may be given as one number for both sides
_SQUARE_KEYS = frozenset({"texture_res"})


def _coerce(key: str, value: Any, tp: Any, where: str) -> Any:
    """Coerce a JSON value to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for alt in args:
            if alt is type(None):
                continue
            with contextlib.suppress(ConfigError):
                return _coerce(key, value, alt, where)
        allowed = " or ".join(_describe(a) for a in args)
        raise ConfigError(f"{where}: '{key}' must be {allowed}, got {value!r}")
    if origin is tuple:
        if key in _SQUARE_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value] * len(args)  # "texture_res": 2048 means [2048, 2048]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: '{key}' must be a list ({_describe(tp)}), got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(key, v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: '{key}' must be a list of {len(args)} "
                              f"({_describe(tp)}), got {value!r}")
        return tuple(_coerce(key, v, a, where) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(float(value)):
            raise ConfigError(f"{where}: '{key}' must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_describe(args[0])}"
        return "[" + ", ".join(_describe(a) for a in args) + "]"
    if tp is type(None):
        return "null"
    return {bool: "true/false", int: "integer", float: "number", str: "string"}.get(
        tp, _type_name(tp))


def _check_values(c: TrainConfig, where: str) -> None:
    def need(cond: bool, key: str, what: str) -> None:
        if not cond:
            raise ConfigError(f"{where}: '{key}' {what}, got {getattr(c, key)!r}")

    need(c.iter >= 0, "iter", "must be >= 0")
    need(c.batch >= 1, "batch", "must be >= 1")
    need(c.spp is None or 1 <= c.spp <= 64, "spp", "must be in 1..64 or null (automatic)")
    need(c.reference_spp is None or 1 <= c.reference_spp <= 64, "reference_spp",
         "must be in 1..64 or null (as spp)")
    need(c.layers is None or 1 <= c.layers <= 16, "layers", "must be in 1..16 or null (automatic)")
    need(8 <= c.train_res <= 8192, "train_res", "must be in 8..8192")
    need(c.display_res is None or 8 <= c.display_res <= 8192, "display_res", "must be in 8..8192")
    need(all(1 <= r <= 16384 for r in c.texture_res), "texture_res", "must be two sizes in 1..16384")
    need(c.display_interval >= 0, "display_interval", "must be >= 0")
    need(c.save_interval >= 0, "save_interval", "must be >= 0")
    lrs = c.learning_rate if isinstance(c.learning_rate, tuple) else (c.learning_rate,)
    need(all(lr is None or lr > 0 for lr in lrs), "learning_rate",
         "must be a positive number or [positions, textures]")
    need(c.light_power > 0, "light_power", "must be > 0")
    need(0.0 <= c.min_roughness <= 1.0, "min_roughness", "must be in [0, 1]")
    need(0 <= c.subdivision <= 5, "subdivision", "must be in 0..5")
    need(isinstance(c.position_smoothing, (int, float)) and not isinstance(
        c.position_smoothing, bool) and 0 <= c.position_smoothing < 1e6,
        "position_smoothing", "must be a number >= 0 (0 = positions trained directly)")
    need(c.laplacian_factor is None or c.laplacian_factor >= 0, "laplacian_factor",
         "must be >= 0 or null (automatic)")
    need(c.background in BACKGROUNDS, "background", f"must be one of {list(BACKGROUNDS)}")
    need(c.train_background in BACKGROUNDS, "train_background",
         f"must be one of {list(BACKGROUNDS)}")
    need(c.loss in LOSSES, "loss", f"must be one of {list(LOSSES)}")
    need(all(s in SKIPPABLE for s in c.skip_train), "skip_train",
         f"may only hold {list(SKIPPABLE)}")
    need(c.backend in BACKENDS, "backend", f"must be one of {list(BACKENDS)}")
    need(c.compile in COMPILE_MODES, "compile", f"must be one of {list(COMPILE_MODES)}")
    need(c.cuda_graph in COMPILE_MODES, "cuda_graph", f"must be one of {list(COMPILE_MODES)}")
    need(c.device == "auto" or c.device == "cpu" or c.device.startswith("cuda"), "device",
         "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
    need(1 <= c.eval_views <= 4096, "eval_views", "must be in 1..4096")
    need(8 <= c.eval_res <= 8192, "eval_res", "must be in 8..8192")
    need(c.lr_decay is None or c.lr_decay >= 0, "lr_decay", "must be >= 0 or null")
    need(isinstance(c.train_zoom, (int, float)) and not isinstance(c.train_zoom, bool)
         and 1 <= c.train_zoom <= 16, "train_zoom", "must be a number in [1, 16] (1 = off)")
    need(c.log_interval >= 1, "log_interval", "must be >= 1")
    need(c.base_method in BASE_METHODS, "base_method", f"must be one of {list(BASE_METHODS)}")
    need(c.init_textures in INIT_TEXTURES, "init_textures",
         f"must be one of {list(INIT_TEXTURES)}")
    need(not (c.random_textures and c.init_textures == "base"), "init_textures",
         "cannot be 'base' with random_textures: true (pick one)")
    need(not (c.random_train_res and not c.custom_mip), "random_train_res",
         "needs custom_mip: true (as in nvdiffmodeling)")
    for key in READ_LIMIT_KEYS:
        need(getattr(c, key) is None or getattr(c, key) >= 1, key,
             "must be a positive integer or null (the reader's default)")


def _from_mapping(data: dict[str, Any], where: str) -> TrainConfig:
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: "
                          f"{', '.join(sorted(_FIELDS))}")
    hints = typing.get_type_hints(TrainConfig)
    values = {k: _coerce(k, v, hints[k], where) for k, v in data.items()}
    config = TrainConfig(**values)
    _check_values(config, where)
    return config


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ['--iter', '100', '--loss', 'mse'] into {'iter': 100, 'loss': 'mse'}.

    Values are read as JSON when they parse (numbers, true/false, lists), else
    kept as strings. Dashes in keys become underscores.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(pairs):
        token = pairs[i]
        if not token.startswith("--") or len(token) < 3:
            raise ConfigError(f"command line: expected --key value, got {token!r}")
        key = token[2:].replace("-", "_")
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(pairs):
                raise ConfigError(f"command line: --{key} needs a value")
            raw = pairs[i + 1]
            i += 2
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None
                ) -> TrainConfig:
    """Build the validated config from a JSON file and command-line overrides.

    Raises:
        ConfigError: unreadable file, bad JSON (with line), unknown key, bad value.
    """
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read config: {e}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config must be a JSON object of key: value")
    if overrides:
        unknown = sorted(set(overrides) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"command line: unknown option --{unknown[0]}; valid keys: "
                              f"{', '.join(sorted(_FIELDS))}")
        data = {**data, **overrides}
        where = f"{where} + command line" if path is not None else "command line"
    return _from_mapping(data, where)
