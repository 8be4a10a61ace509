"""Coverage-guided fuzz targets for difflod's readers (atheris, i.e. libFuzzer).

    python tests/io/fuzz_harness.py TARGET [libFuzzer flags] [extra corpus folders]

TARGET is one of obj, mtl, gltf, glb, image. Each execution writes the
fuzzer's bytes to one input file beside the side files a real model has (MTL
libraries, textures, .bin buffers, written by difflod itself) and reads it
with small `ReadLimits`. A `DiffLodError` is the right answer to a bad file;
anything else escaping the reader (another exception, a crash), a run over
`-timeout` seconds (a hang) or the process growing by more than 1 GiB is a
finding, and libFuzzer stops with a non-zero exit status and saves the input.

The seed corpus is written at start by difflod's own writers (the procedural
assets at a few dozen triangles, as OBJ/MTL, glTF and GLB, and PNG/JPEG files
of every supported kind) into a temporary folder: no binary corpus is kept in
the repository beyond tests/io/fuzz_regressions/. bench/fuzz.py runs the
targets for longer and tabulates executions, coverage and findings;
tests/io/test_fuzz.py runs each for a few seconds and replays the regressions.
"""

from __future__ import annotations

import hashlib
import operator
import os
import resource
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

TARGETS = ("obj", "mtl", "gltf", "glb", "image")
SUFFIX = {"obj": ".obj", "mtl": ".mtl", "gltf": ".gltf", "glb": ".glb", "image": ".png"}
# modules whose Python code is instrumented for coverage (the readers and the
# pure-Python parsers under them); torch and numpy are imported before, plainly
INSTRUMENTED = ("difflod.io", "pygltflib", "png", "PIL.PngImagePlugin",
                "PIL.JpegImagePlugin", "PIL.ImageFile")
# the process may grow by this much over its size after the imports (libFuzzer -rss_limit_mb)
MEMORY_BUDGET_MB = 1024
HANG_SECONDS = 5


def fuzz_limits() -> object:
    """Small ReadLimits: a finding must be a reader's fault, not an allowed big model."""
    from difflod.io.limits import ReadLimits

    return ReadLimits(max_vertices=200_000, max_triangles=200_000, max_texture_size=1024,
                      max_file_bytes=16 * 1024 * 1024, max_animation_matrices=200_000)


def make_reader(name: str, folder: Path) -> tuple[Path, Callable[[], object]]:
    """(input file, the call that reads it) of target `name` in `folder`."""
    from difflod.io import gltf, image, mtl, obj

    limits = fuzz_limits()
    path = folder / f"input{SUFFIX[name]}"
    read: Callable[[], object] = {
        "obj": lambda: obj.read(path, limits=limits),
        "mtl": lambda: mtl.read_mtl(path, folder, limits),
        "gltf": lambda: gltf.read(path, limits=limits),
        "glb": lambda: gltf.read(path, limits=limits),
        "image": lambda: image.read_image(path, limits),
    }[name]
    return path, read


def make_target(name: str, folder: Path, save_prefix: str | None = None
                ) -> Callable[[bytes], None]:
    """The function libFuzzer calls: bytes -> the reader of `name`, in `folder`.

    An input that raises anything but a DiffLodError is also saved as
    `<save_prefix>crash-<sha1>` here (atheris does not always get to it).
    """
    from difflod.errors import DiffLodError

    path, read = make_reader(name, folder)

    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            read()
        except DiffLodError:
            pass
        except Exception:
            traceback.print_exc()  # into the log before libFuzzer stops
            sys.stderr.flush()
            if save_prefix is not None:
                Path(save_prefix + "crash-" + hashlib.sha1(data).hexdigest()).write_bytes(data)
            raise

    return run


def write_seeds(folder: Path, corpus: Path) -> None:
    """Side files into `folder`, seed inputs into `corpus/<target>/`, all by difflod."""
    import numpy as np
    import torch
    from PIL import Image

    from difflod import assets
    from difflod.io import gltf, obj
    from difflod.io.image import write_image

    for t in TARGETS:
        (corpus / t).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(assets.ASSETS):
        mesh = assets.make(name, triangles=48, seed=i, texture_res=8)
        stem = f"a{i}"
        obj.write(mesh, folder / f"{stem}.obj")
        (corpus / "obj" / f"{stem}.obj").write_bytes((folder / f"{stem}.obj").read_bytes())
        (corpus / "mtl" / f"{stem}.mtl").write_bytes((folder / f"{stem}.mtl").read_bytes())
        gltf.write(mesh, folder / f"{stem}.gltf")
        (corpus / "gltf" / f"{stem}.gltf").write_bytes((folder / f"{stem}.gltf").read_bytes())
        gltf.write(mesh, corpus / "glb" / f"{stem}.glb")
    # hand-written OBJ/MTL features the writer does not use
    (corpus / "obj" / "features.obj").write_text(
        "# quads, negative indices, v//n, continuation, groups\nmtllib a0.mtl\no x\n"
        "v 0 0 0\nv 1 0 0 \\\n\nv 1 1 0\nv 0 1 0 1.0\nvt 0 0\nvt 1 1\nvn 0 0 1\ng a\n"
        "f 1/1/1 2/2/1 3/1/1 4/2/1\nf -4//1 -3//1 -2//1\ns off\nf 1 2 3\n")
    (corpus / "mtl" / "features.mtl").write_text(
        "newmtl m\nKd 0.5\nKs 0 0.5 0\nNs 20\nd 0.5\nTr 0.1\nPr 0.3\nPm 0.1\n"
        "map_Kd -s 1 1 1 -o 0 0 texture_kd.png\nbump -bm 0.5 texture_kd.png\n"
        "map_d texture_kd.png\nmap_Ks texture_kd.png\ndisp texture_kd.png\nillum 2\n")
    rng = np.random.default_rng(0)
    img = rng.random((6, 5, 4)).astype(np.float32)
    for c in (1, 2, 3, 4):
        write_image(corpus / "image" / f"c{c}.png", img[..., :c])
        write_image(corpus / "image" / f"c{c}_16.png", img[..., :c], bits=16)
    write_image(corpus / "image" / "rgb.jpg", torch.from_numpy(img[..., :3]))
    q = (img[..., :3] * 255).astype(np.uint8)
    Image.fromarray(q).convert("P").save(corpus / "image" / "palette.png")
    Image.fromarray(q).convert("1").save(corpus / "image" / "bits.png")
    Image.fromarray(q).convert("L").save(corpus / "image" / "gray.jpg", progressive=True)


_SCALARS = (int, float, str, bytes, bytearray, type(None))
_COMPARE = (operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge)


def plain_compare_for_arrays(atheris: object) -> Callable[..., object]:
    """Make atheris's comparison hook compare arrays itself.

    Instrumented code calls `atheris._trace_cmp(left, right, op, index,
    left_is_constant)` for every `<`, `==`, ... and takes its result. atheris
    3.0 keeps a reference to that result: for the readers' numpy comparisons
    (a `[N]` bool array per `buf == 10`) the process grew by ~12 KB an
    execution, 1 GiB (libFuzzer's -rss_limit_mb) in 85,000 OBJ executions, which
    libFuzzer reports as out-of-memory though the reader frees everything
    (measured: 2,000 instrumented `a == 10` on 100,000 bytes grew it by 191 MB,
    `np.equal(a, 10)` by 0). Comparisons of plain scalars and strings, the
    ones libFuzzer learns from, still go to the hook; others are computed here.
    `atheris.Fuzz` replaces the module's hooks when it starts: call this from
    the fuzzed function. Returns the hook installed.
    """
    hook = atheris._trace_cmp  # type: ignore[attr-defined]

    def trace_cmp(left: object, right: object, op: int, index: int, const: bool) -> object:
        if isinstance(left, _SCALARS) and isinstance(right, _SCALARS) or \
                not 0 <= op < len(_COMPARE):
            return hook(left, right, op, index, const)
        return _COMPARE[op](left, right)

    atheris._trace_cmp = trace_cmp  # type: ignore[attr-defined]
    return trace_cmp


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags] [corpus dirs]")
    name = argv[1]
    import atheris
    import numpy  # noqa: F401 - imported uninstrumented, before the readers
    import torch

    torch.set_num_threads(1)
    import difflod.geometry.normals
    import difflod.mesh

    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        import PIL.JpegImagePlugin
        import PIL.PngImagePlugin  # noqa: F401
        import png  # noqa: F401
        import pygltflib  # noqa: F401

        import difflod.io.gltf
        import difflod.io.image
        import difflod.io.obj  # noqa: F401
    warnings.simplefilter("ignore")
    # ours, not libFuzzer's: -work_dir=DIR, where the side files, seeds and new
    # inputs go, for the caller to delete (default a new temporary folder in RAM);
    # -corpus_out=DIR, the folder that receives what the run finds (default
    # DIR/new), which several processes of one target may share (libFuzzer
    # reloads it each second, so each picks up what the others found)
    ours = ("-work_dir=", "-corpus_out=")
    flags = [a for a in argv[2:] if a.startswith("-") and not a.startswith(ours)]
    dirs = [a for a in argv[2:] if not a.startswith("-")]
    given = {k: a.split("=", 1)[1] for k in ours for a in argv[2:] if a.startswith(k)}
    shm = Path("/dev/shm")
    work = Path(given["-work_dir="]) if "-work_dir=" in given else Path(tempfile.mkdtemp(
        prefix="difflod-fuzz-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
    work.mkdir(parents=True, exist_ok=True)
    write_seeds(work, work / "corpus")
    prefix = [a.split("=", 1)[1] for a in flags if a.startswith("-artifact_prefix=")]
    target = make_target(name, work, prefix[-1] if prefix else "./")
    if not any(f.startswith("-rss_limit_mb=") for f in flags):
        flags.append(f"-rss_limit_mb={_rss_mb() + MEMORY_BUDGET_MB}")
    if not any(f.startswith("-timeout=") for f in flags):
        flags.append(f"-timeout={HANG_SECONDS}")
    # the first folder receives what the run finds; the seeds come after it
    new = Path(given.get("-corpus_out=", work / "new"))
    new.mkdir(parents=True, exist_ok=True)
    hooked: list[object] = [None]

    def one_input(data: bytes) -> None:
        if atheris._trace_cmp is not hooked[0]:  # atheris.Fuzz installs its own first
            hooked[0] = plain_compare_for_arrays(atheris)
        target(data)

    atheris.Setup([argv[0], *flags, str(new), str(work / "corpus" / name), *dirs], one_input)
    # bench/fuzz.py subtracts this from the process's CPU time: the fuzzing's own
    print(f"fuzz_harness: setup_cpu_s: {time.process_time():.3f}", file=sys.stderr, flush=True)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
