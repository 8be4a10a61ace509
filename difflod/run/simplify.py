"""`difflod simplify`: from a detailed model and a triangle budget to a light model.

The whole automatic pipeline, with no base mesh to make by hand:

1. base mesh — QEM decimation of the reference to the budget, a fresh UV
   atlas (xatlas) and a closest-point bake of kd / ks / normal onto it:
   exactly the usual pipeline, `difflod.base.baseline.baseline`;
2. the trainable candidate starts from that base *and its baked textures*
   (config `init_textures: "base"`), so optimization begins at the QEM+bake
   result instead of noise; or, where `base_mesh` picks another start
   (`base_method`), from an even remesh of a closed surface baked the same
   way (base/remesh.py: where it keeps the shape about as well as QEM) or
   from a cloud of alpha-tested cards (foliage, base/cards.py);
3. appearance-driven optimization (difflod.optimize.trainer.Trainer, run
   by `run.train.fit`);
4. the outputs of `difflod train` in OUT_DIR (`run.train.export`), plus the
   starting point, and the held-out evaluation with its report:

   - config.json, history.json, checkpoint.pt, img_NNNNNN.png;
   - mesh/mesh.obj (+ mtl, textures) and mesh.glb — the result;
   - qem_bake.glb — the QEM + bake baseline it started from;
   - metrics.json and report/ — reference vs "qem_bake" vs "difflod" on
     held-out views, so the gain over the usual pipeline is one table (plus
     "initial", the start when it is not QEM + bake itself: the QEM
     geometry with random textures (`init_textures: "random"`), the
     remesh or the cards; metrics.json's "start" says which).

Resuming (`resume=True`, `difflod simplify --resume`) follows `difflod
train`'s rules (run/train.py, run/resume.py): the output folder is locked,
and the run continues from checkpoint.pt, starts afresh without one, or
does nothing when the folder holds the finished run. The base mesh stage is
run again rather than read back from qem_bake.glb (whose 8-bit textures are
not the float ones training started from): QEM, the remesher, xatlas and
the bake are deterministic for a given input, budget and seed, and the
checkpoint holds a digest of the base mesh, so a base that came out
differently is refused instead of silently resumed.

The base mesh's normals and tangents are recomputed as the renderer computes
them, its normal map matched to them (base/render_tangents.py), before
training starts.

Unlike `difflod train`, the base mesh is not refitted to the reference's
bounding box: it comes from the reference itself, and a QEM result with
shrunk spikes must not be stretched. Textures starting from the reference's
own maps (`init_textures: "reference"`, nvdiffmodeling's default) mean
nothing on a fresh atlas, so that setting is read as "base" here; "random"
(or `random_textures`) is honoured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from difflod.config import TrainConfig, load_config
from difflod.errors import ConfigError, DiffLodError
from difflod.mesh import Mesh

__all__ = [
    "SIMPLIFY_DEFAULTS",
    "SimplifyResult",
    "base_mesh",
    "check_budget",
    "open_reference",
    "simplify",
    "simplify_config",
]

#: settings of `difflod simplify` that differ from TrainConfig's defaults; a
#: config file or the command line overrides them. The position learning rate
#: is 5x below nvdiffmodeling's 0.01: the QEM base is already close, and Adam's
#: first steps move every vertex by about the learning rate (measured on the
#: spiky asset, 3024 -> 300 triangles, 20 iterations at 64 px: 0.01 loses
#: 0.5 dB of held-out PSNR against the QEM+bake start, 0.002 gains 1.1 dB).
#: The Laplacian is the relative one (nvdiffmodeling's choice for its decimated
#: starts): it keeps the QEM mesh's local shape, where the plain one pulls a
#: mesh of a few hundred triangles towards a smooth blob, shrinking spikes and
#: leaves. Its automatic weight is scaled by the start's own Laplacian
#: (optimize/schedule.py); until then it froze the positions, and the gains
#: once measured here for the relative Laplacian were those of textures alone.
#: The learning rates decay to a tenth by the last iteration (`lr_decay: null`):
#: Adam moves a texel by about its rate every step, so a rate that stays at 0.01
#: leaves that much noise in the textures (SSIM below QEM + bake's on beacon,
#: vcolor and multi_material). Measured with bench/fidelity.py on a 2-core CPU
#: (20k-triangle references to 200, 200 iterations at 128 px, 8 views at 128
#: px, one run each), mean gain over QEM + bake of 7 assets: positions frozen
#: (before) +1.46 dB; free (laplacian_factor 0) +1.55; factor 10 +1.57; 100
#: +1.56; free with the decay +1.79, to a hundredth +1.42; the automatic weight
#: with the decay +1.77, and SSIM and FLIP better than QEM + bake's on every
#: asset but shrub. The skinned cylinder does best frozen (+4.40; +2.08 so).
SIMPLIFY_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "iter": 2000, "batch": 8, "train_res": 512, "texture_res": [1024, 1024],
    "learning_rate": [0.002, 0.01], "init_textures": "base", "relative_laplacian": True,
    "lr_decay": None,
    # a skinned, animated reference trains in poses drawn from its animation
    # (no effect on a static one); `animate: false` trains its rest pose only
    "animate": True})

BASELINE_NAME = "qem_bake"
INITIAL_NAME = "initial"  # the start of training, evaluated when it is not the baseline


@dataclass
class SimplifyResult:
    """What `simplify` produced.

    Attributes:
        mesh: the optimized model, in the reference's own frame.
        baseline: the QEM + bake model it started from (same frame).
        out_dir: the folder holding every output.
        history: one record per iteration (loss, laplacian, psnr, ms).
        metrics: held-out evaluation (see difflod.evaluate.evaluate), or None.
        seconds: optimization time.
        timings: wall seconds per stage: base_mesh_s, train_s (training and
            export), and with the evaluation evaluate_s, report_s (also in
            metrics.json's "timings").
        start: how the mesh trained was made: "qem" (the baseline itself),
            "remesh" or "cards" (base_mesh; metrics.json's "start"); None for
            a finished run read back without its evaluation.
    """

    mesh: Mesh
    baseline: Mesh
    out_dir: Path
    history: list[dict] = field(default_factory=list)
    metrics: dict | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    start: str | None = None


def simplify_config(path: str | Path | None = None,
                    overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The configuration of a simplify run: SIMPLIFY_DEFAULTS < file < overrides.

    Args:
        path: an optional JSON config (nvdiffmodeling keys accepted).
        overrides: keys from the command line (e.g. {"iter": 100}).
    Raises:
        ConfigError: unreadable file, unknown key, bad value (via load_config).
    """
    explicit: set[str] = set()
    if path is not None:
        load_config(path)  # reports a missing file, bad JSON or a bad key first
        explicit = set(json.loads(Path(path).read_text(encoding="utf-8")))
    if "random_textures" in explicit or "random_textures" in (overrides or {}):
        explicit.add("init_textures")  # random_textures: true must not meet "base"
    defaults = {k: v for k, v in SIMPLIFY_DEFAULTS.items() if k not in explicit}
    return load_config(path, {**defaults, **dict(overrides or {})})


def check_budget(triangles: object, reference: Mesh, name: str) -> int:
    if isinstance(triangles, bool) or not isinstance(triangles, int):
        raise DiffLodError(f"triangles must be an integer, got {triangles!r}")
    if triangles < 4:
        raise DiffLodError(f"triangles must be >= 4, got {triangles}")
    if reference.num_triangles == 0:
        raise DiffLodError(f"{name}: the model has no triangles; there is nothing to simplify")
    if triangles >= reference.num_triangles:
        raise DiffLodError(f"{name}: has {reference.num_triangles} triangles, so a budget of "
                           f"{triangles} leaves nothing to simplify; ask for fewer")
    return triangles


def open_reference(reference: str | Path | Mesh, config: TrainConfig | None
                   ) -> tuple[Mesh, str, TrainConfig]:
    """The reference model, its name for messages, and the run's config checked for
    simplify (no base_mesh; "reference" textures read as "base"; texture_res >= 8;
    base_method "auto" resolved to "cards" for foliage; base_mesh resolves the rest)."""
    from difflod.io.limits import limits_from
    from difflod.models import open_model

    config = config if config is not None else simplify_config()
    if config.base_mesh is not None:
        raise ConfigError(f"config: 'base_mesh' is {config.base_mesh!r}, but simplify makes "
                          f"the base mesh itself; remove it, or use `difflod train`")
    if isinstance(reference, Mesh):
        ref_mesh, name = reference, "reference"
    else:
        name = str(reference)
        ref_mesh = open_model(reference, mtl_override=config.mtl_override,
                              limits=limits_from(config))
        config = config.replace(ref_mesh=name)
    if config.init_textures == "reference":
        config = config.replace(init_textures="base")
    if max(config.texture_res) < 8:
        raise ConfigError(f"config: 'texture_res' must be >= 8 to bake textures, "
                          f"got {list(config.texture_res)}")
    from difflod.base.cards import MIN_TEXTURE

    if config.base_method == "cards" and max(config.texture_res) < MIN_TEXTURE:
        raise ConfigError(f"config: 'base_method' cards needs 'texture_res' >= {MIN_TEXTURE}, "
                          f"got {list(config.texture_res)}")
    # "auto" resolved once, here, for every level and the files (config.json says which)
    config = config.replace(base_method=base_method(ref_mesh, config))
    return ref_mesh, name, config


def base_mesh(reference: Mesh, budget: int, config: TrainConfig) -> tuple[Mesh, Mesh, str]:
    """The base-mesh stage: QEM + atlas + bake of `reference` to `budget` triangles,
    its normal map matched to the renderer's tangents; returns (base, the mesh to
    train, how that was made: "qem", "remesh" or "cards"), both meshes with the
    reference's skin transferred when it has one (so qem_bake.glb and the result
    move as the reference does; `animate` says whether training poses them). The
    base returned for the files has the opaque parts of a BLEND bake under an
    OPAQUE material (base/opaque_split.py); the one to train keeps the single
    material. The base for the files is always QEM + bake, the usual pipeline the
    result is compared with; the mesh to train is another where
    `config.base_method` picks it: cards (foliage, base/cards.py), or an even
    remesh of a closed surface (base/remesh.py; "auto" takes it where it keeps
    the reference's shape about as well as QEM at this budget)."""
    from difflod.base.opaque_split import split_opaque

    base = _base(reference, budget, config, "qem")
    method, geometry = base_method(reference, config), None
    if method == "auto":
        from difflod.base.remesh import even_geometry

        geometry = even_geometry(reference, base, budget)
        method = "qem" if geometry is None else "remesh"
    start = base if method == "qem" else _base(reference, budget, config, method, geometry)
    return split_opaque(base), start, method


def base_method(reference: Mesh, config: TrainConfig) -> str:
    """config.base_method, with "auto" resolved to "cards" for foliage where the
    atlas holds them; otherwise "auto" stays, for each budget to choose between
    "qem" and "remesh" (base_mesh)."""
    from difflod.base.cards import MIN_TEXTURE, is_foliage

    if config.base_method != "auto":
        return config.base_method
    return "cards" if max(config.texture_res) >= MIN_TEXTURE and is_foliage(reference) else "auto"


def _base(reference: Mesh, budget: int, config: TrainConfig, method: str,
          geometry: tuple | None = None) -> Mesh:
    from difflod.base.baseline import baseline
    from difflod.base.render_tangents import match_render_tangents

    base = match_render_tangents(baseline(reference, budget, texture_res=max(config.texture_res),
                                          seed=config.seed, method=method, geometry=geometry))
    if reference.skin is not None and reference.v_joints is not None \
            and reference.v_weights is not None:
        from difflod.geometry.skin_transfer import transfer_skin

        base = transfer_skin(reference, base)
    return base


def simplify(reference: str | Path | Mesh, triangles: int, out_dir: str | Path, *,
             config: TrainConfig | None = None, quiet: bool = False, evaluate: bool = True,
             device: torch.device | None = None, resume: bool = False) -> SimplifyResult:
    """Make a `triangles`-triangle model that looks like `reference`; write OUT_DIR.

    Args:
        reference: a model file, an `asset:NAME?...` spec, or a Mesh.
        triangles: the budget, 4 <= triangles < the reference's triangle count;
            the result has at most this many (QEM may stop a few short).
        out_dir: the folder for the outputs (see the module docstring).
        config: run settings (default `simplify_config()`); its ref_mesh is
            replaced by `reference`; base_mesh must be unset.
        quiet: no progress output.
        evaluate: write metrics.json and report/ (held-out views).
        device: torch device (default: config.device).
        resume: continue the run in `out_dir` (see the module docstring).
    Returns:
        SimplifyResult; result.mesh and result.baseline are CPU meshes with one
        material, kd `[H,W,3|4]`, ks `[H,W,3]`, normal `[H,W,3]` float32 (a
        BLEND one with opaque parts: an OPAQUE copy on those, base/opaque_split.py).
    Raises:
        DiffLodError: a missing or bad model, a budget out of range, a bad config,
            a checkpoint that does not fit; OutputInUseError: another run writes
            into `out_dir`; OutputFileError: an output cannot be written.
    """
    from difflod.io import save
    from difflod.optimize.trainer import Trainer, prepare_meshes, resolve_device
    from difflod.run import outputs
    from difflod.run.lock import output_lock
    from difflod.run.resume import final_files
    from difflod.run.stages import StageLog
    from difflod.run.train import export, finish, fit, start_point

    ref_mesh, name, config = open_reference(reference, config)
    budget = check_budget(triangles, ref_mesh, name)
    out = Path(out_dir)
    config = config.replace(out_dir=str(out))
    device = device if device is not None else resolve_device(config.device)

    with output_lock(out):
        files = final_files(out, evaluate=evaluate, extra=[f"{BASELINE_NAME}.glb"])
        point = start_point(out, config, resume=resume, files=files, quiet=quiet)
        if point.finished:
            return _finished_result(out, evaluate)
        stages = StageLog(["base mesh", "train", "evaluate", "report"] if evaluate
                          else ["base mesh", "train"], quiet=quiet)
        stages.begin("base mesh")
        base, train_base, method = base_mesh(ref_mesh, budget, config)
        ref_n, _, frame = prepare_meshes(ref_mesh, train_base, config, device)
        base_n = frame.to_unit(train_base).to(device)  # no AABB refit (see module docstring)

        outputs.write_config(out, config)
        save(base, out / f"{BASELINE_NAME}.glb")
        stages.begin("train")  # and export
        trainer = Trainer(config, ref_n, base_n, out, quiet=quiet)
        candidates = {BASELINE_NAME: base.to("cpu")}
        if config.init_textures == "random" or method != "qem":
            # the start differs from the baseline: show it
            candidates[INITIAL_NAME] = frame.from_unit(
                trainer.trainable.base_mesh().clone()).to("cpu")
        if point.checkpoint is not None:
            trainer.load_checkpoint(point.checkpoint)
        final, seconds = fit(trainer, frame, out)
        export(out, trainer, final)
        metrics = None
        if evaluate:  # the evaluate and report stages begin inside
            metrics = outputs.evaluate_run(out, config, ref_mesh,
                                           {**candidates, "difflod": final},
                                           history=trainer.history, seconds=seconds,
                                           files={BASELINE_NAME: out / f"{BASELINE_NAME}.glb"},
                                           quiet=quiet, on_stage=stages.begin,
                                           timings=stages.timings(), device=device,
                                           start=method)
        finish(trainer)
        stages.finish()
    return SimplifyResult(mesh=final, baseline=base.to("cpu"), out_dir=out,
                          history=trainer.history, metrics=metrics, seconds=seconds,
                          timings=stages.timings(), start=method)


def _finished_result(out: Path, evaluate: bool) -> SimplifyResult:
    """A finished run's result, read back from its files."""
    from difflod.io import load

    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8")) \
        if evaluate else None
    return SimplifyResult(mesh=load(out / "mesh.glb"), baseline=load(out / f"{BASELINE_NAME}.glb"),
                          out_dir=out, history=history, metrics=metrics,
                          start=metrics.get("start") if isinstance(metrics, dict) else None)
