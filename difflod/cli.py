"""Command-line interface: thin argument parsing over the library; no logic here.

Every command maps to one library call. A `DiffLodError` (bad file, config or
argument) prints one line and exits 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from difflod.errors import DiffLodError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like our own errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"difflod: error: {message} (see `{self.prog} --help`)\n")


def _add_simplify_flags(p: argparse.ArgumentParser) -> None:
    """The settings of a simplify run (read by _simplify_overrides): simplify and batch."""
    p.add_argument("--config", default=None, help="JSON config (nvdiffmodeling keys accepted)")
    p.add_argument("--iter", type=int, default=None, help="iterations (default 2000)")
    p.add_argument("--train-res", type=int, default=None, help="training resolution (default 512)")
    p.add_argument("--batch", type=int, default=None, help="views per step (default 8)")
    p.add_argument("--texture-res", type=int, default=None, help="texture side (default 1024)")
    p.add_argument("--backend", default=None, choices=["auto", "cpu", "cuda", "torch"])
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=None)


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    """--max-vertices ... --allow-outside-paths: difflod.io.limits.ReadLimits."""
    g = p.add_argument_group("input limits (checked before a model file's data is allocated)")
    for key, what in (("max_vertices", "vertices of a model"),
                      ("max_triangles", "triangles of a model"),
                      ("max_texture_size", "width and height of a texture"),
                      ("max_file_bytes", "bytes of a file or glTF buffer"),
                      ("max_animation_matrices", "glTF animation keyframes x nodes")):
        g.add_argument("--" + key.replace("_", "-"), type=int, default=None, metavar="N",
                       help=f"most {what} read")
    g.add_argument("--allow-outside-paths", action="store_true", default=None,
                   help="let glTF URIs, mtllib and MTL texture paths leave the model's folder")


def _limit_settings(args: argparse.Namespace) -> dict[str, object]:
    """The limit flags given on the command line, as config keys."""
    keys = ("max_vertices", "max_triangles", "max_texture_size", "max_file_bytes",
            "max_animation_matrices", "allow_outside_paths")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def _limits(args: argparse.Namespace) -> object:
    from difflod.io.limits import ReadLimits

    return ReadLimits(**_limit_settings(args))


def _budgets(text: str) -> list[int]:
    """argparse type of --triangles: one count or a comma-separated list of counts."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a triangle count or a comma-separated list of counts "
            f"(e.g. 1000 or 20000,5000,1000), got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="difflod", description="Appearance-driven 3D model simplification.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser("demo", help="optimize a procedural model on this machine, write out/demo")
    d.add_argument("--out-root", default="out", help="folder for outputs (default: out)")
    d.add_argument("--iter", type=int, default=None, help="iterations (default: the demo's)")
    d.add_argument("--backend", default=None, choices=["auto", "cpu", "cuda", "torch"])
    d.add_argument("--device", default=None)
    d.add_argument("--quiet", action="store_true")

    t = sub.add_parser("train", help="optimize a base mesh to look like a reference",
                       description="Options after the known ones are config keys: "
                                   "--iter 100 --loss mse ...")
    t.add_argument("--config", default=None, help="JSON config (nvdiffmodeling keys accepted)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in out/<name> from its checkpoint.pt (from the "
                        "start if it has none; nothing to do if it finished)")
    t.add_argument("--out-root", default="out")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--gpus", type=int, default=1,
                   help="split each batch over this many GPUs of this host (NCCL)")
    _add_limit_flags(t)

    i = sub.add_parser("info", help="describe a model file")
    i.add_argument("file")
    _add_limit_flags(i)

    e = sub.add_parser("eval", help="compare candidates with a reference on held-out views")
    e.add_argument("reference")
    e.add_argument("candidates", nargs="+")
    e.add_argument("--views", type=int, default=64)
    e.add_argument("--res", type=int, default=512)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--backend", default=None, choices=["auto", "cpu", "cuda", "torch"])
    e.add_argument("--device", default="auto",
                   help="auto (the GPU when torch sees one), cpu, cuda or cuda:N: where the "
                        "models are rendered and scored")
    e.add_argument("--renderer", default="difflod", choices=["difflod", "threejs"],
                   help="render with difflod's renderer, or with three.js in headless "
                        "Chromium (the files as a three.js viewer shows them)")
    e.add_argument("-o", "--out", default=None, help="folder for metrics.json and report/")
    _add_limit_flags(e)

    b = sub.add_parser("baseline", help="QEM decimation + texture bake (the usual pipeline)")
    b.add_argument("reference")
    b.add_argument("--triangles", type=int, required=True)
    b.add_argument("--texture-res", type=int, default=1024)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("-o", "--out", required=True, help="output model file (.obj, .gltf, .glb)")
    _add_limit_flags(b)

    s = sub.add_parser("simplify", help="QEM base mesh + bake, then appearance-driven "
                                        "optimization to a triangle budget",
                       description="Decimate REF to --triangles with QEM, bake its textures "
                                   "onto a fresh UV atlas, optimize from there (foliage, "
                                   "cut-out leaves QEM cannot simplify: from crossed "
                                   "alpha-tested cards; config base_method); OUT_DIR gets "
                                   "the model, the qem_bake baseline and metrics comparing both.")
    s.add_argument("reference", metavar="REF", help="model file or asset:NAME spec")
    s.add_argument("--triangles", type=_budgets, required=True, metavar="N[,N...]",
                   help="triangle budget; several (20000,5000,1000) make an LOD chain "
                        "in one run")
    s.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="output folder")
    _add_simplify_flags(s)
    s.add_argument("--resume", action="store_true",
                   help="continue the run in OUT_DIR from its checkpoint.pt (from the start "
                        "if it has none; nothing to do if it finished)")
    s.add_argument("--keep-checkpoint", action="store_true",
                   help="keep checkpoint.pt when the run finishes (config keep_checkpoint)")
    s.add_argument("--quiet", action="store_true")
    _add_limit_flags(s)

    m = sub.add_parser("batch", help="simplify every model of a manifest or folder: a local "
                                     "pool or a Ray cluster, resumable, one report",
                       description="MANIFEST|FOLDER: a CSV/JSON manifest (model, triangles, name, "
                                   "config keys) or a folder of OBJ/glTF/GLB files. OUT gets "
                                   "OUT/<model>/ as `difflod simplify` writes it, plus "
                                   "summary.csv and report.html. Complete models are skipped "
                                   "on a re-run. Exit 1 when a model failed.")
    m.add_argument("source", metavar="MANIFEST|FOLDER")
    m.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    m.add_argument("--triangles", default=None, metavar="BUDGETS",
                   help="budgets: counts or fractions of each model's triangles, several for "
                        "an LOD chain (e.g. 5%%,1%% or 2000,500); needed for a folder")
    m.add_argument("--workers", type=int, default=None,
                   help="local processes (default: one per GPU, else one per 4 cores)")
    m.add_argument("--threads", type=int, default=None,
                   help="threads per local worker (default: cores / workers) or CPUs per "
                        "Ray task (default 1)")
    m.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster: auto, HOST:PORT, ray://..., or local")
    m.add_argument("--retries", type=int, default=2,
                   help="Ray's retries of a task whose worker died or raised (default 2)")
    _add_simplify_flags(m)
    m.add_argument("--quiet", action="store_true")
    _add_limit_flags(m)
    return p


def _simplify_overrides(args: argparse.Namespace) -> dict:
    """The config keys given as flags to simplify or batch (input limits included)."""
    overrides = {k: v for k, v in (("iter", args.iter), ("train_res", args.train_res),
                                   ("batch", args.batch), ("backend", args.backend),
                                   ("device", args.device), ("seed", args.seed)) if v is not None}
    overrides.update(_limit_settings(args))
    if args.texture_res is not None:
        overrides["texture_res"] = [args.texture_res, args.texture_res]
    if getattr(args, "keep_checkpoint", False):  # simplify's flag (batch has none)
        overrides["keep_checkpoint"] = True
    return overrides


def _cmd_demo(args: argparse.Namespace, rest: list[str]) -> int:
    from difflod.run.demo import run_demo

    run_demo(out_root=args.out_root, iterations=args.iter, backend=args.backend,
             device=args.device, quiet=args.quiet)
    return 0


def _cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    from difflod.config import load_config, parse_overrides
    from difflod.run import distributed
    from difflod.run.train import train

    config = load_config(args.config, {**parse_overrides(rest), **_limit_settings(args)})
    if distributed.in_torchrun():
        out = distributed.train_torchrun(config, out_root=args.out_root, resume=args.resume,
                                         quiet=args.quiet)
    elif args.gpus > 1:
        out = distributed.train_distributed(config, args.gpus, out_root=args.out_root,
                                            resume=args.resume, quiet=args.quiet)
    else:
        out = train(config, out_root=args.out_root, resume=args.resume,
                    quiet=args.quiet).out_dir
    print(f"wrote {out}")
    return 0


def _cmd_info(args: argparse.Namespace, rest: list[str]) -> int:
    from difflod.info import describe
    from difflod.models import open_model

    print(describe(open_model(args.file, limits=_limits(args)), args.file))
    return 0


def _cmd_eval(args: argparse.Namespace, rest: list[str]) -> int:
    from difflod.run.eval import evaluate_models

    evaluate_models(args.reference, args.candidates, out=args.out, views=args.views,
                    res=args.res, seed=args.seed, backend=args.backend,
                    renderer=args.renderer, limits=_limits(args), device=args.device)
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _cmd_baseline(args: argparse.Namespace, rest: list[str]) -> int:
    from difflod.run.baseline import make_baseline

    result = make_baseline(args.reference, args.triangles, args.out,
                           texture_res=args.texture_res, seed=args.seed,
                           limits=_limits(args))
    print(f"wrote {Path(args.out)} ({result.num_triangles} triangles)")
    return 0


def _cmd_simplify(args: argparse.Namespace, rest: list[str]) -> int:
    from difflod.run.simplify import simplify, simplify_config

    config = simplify_config(args.config, _simplify_overrides(args))
    if len(args.triangles) > 1:
        from difflod.run.lod import simplify_chain

        chain = simplify_chain(args.reference, args.triangles, args.out, config=config,
                               quiet=args.quiet, resume=args.resume)
        counts = ", ".join(str(level.mesh.num_triangles) for level in chain.levels)
        print(f"wrote {chain.out_dir} (LOD chain: {counts} triangles)")
        return 0
    result = simplify(args.reference, args.triangles[0], args.out, config=config,
                      quiet=args.quiet, resume=args.resume)
    print(f"wrote {result.out_dir} ({result.mesh.num_triangles} triangles)")
    return 0


def _cmd_batch(args: argparse.Namespace, rest: list[str]) -> int:
    from difflod.run.batch import batch

    result = batch(args.source, args.out, triangles=args.triangles, config_path=args.config,
                   overrides=_simplify_overrides(args), workers=args.workers,
                   threads=args.threads, ray=args.ray, retries=args.retries, quiet=args.quiet)
    print(f"wrote {result.out_dir} ({len(result.completed)} completed, {len(result.skipped)} "
          f"already complete, {len(result.failed)} failed; see summary.csv, report.html)")
    for name, error in result.failed.items():
        print(f"difflod: {name} failed: {error}", file=sys.stderr)
    return 1 if result.failed else 0


_COMMANDS = {"demo": _cmd_demo, "train": _cmd_train, "info": _cmd_info, "eval": _cmd_eval,
             "baseline": _cmd_baseline, "simplify": _cmd_simplify, "batch": _cmd_batch}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return _COMMANDS[args.command](args, rest)
    except DiffLodError as e:
        if args.debug:
            raise
        print(f"difflod: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("difflod: interrupted", file=sys.stderr)
        return 130
