"""Fuzzing of the readers: the inputs it once broke them with, and a short run of each.

tests/io/fuzz_harness.py holds the targets (one per reader, atheris); the
long runs and their table are bench/fuzz.py. Each file under fuzz_regressions/
is an input the fuzzer found (named by what it did); it must now get the
DiffLodError written next to it here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from difflod.errors import DiffLodError

HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE / "fuzz_regressions"

# file -> the one line it must now get (before the fix: the exception named)
EXPECTED = {
    # OSError: [Errno 36] File name too long (from Path.is_file)
    "mtl/name-too-long.mtl": r"input\.mtl: line 6: path .* cannot be used: File name too long",
    # IndexError: a line of bytes.strip()-survivors that str.split() finds empty
    "mtl/unicode-blank-line.mtl": r"input\.mtl: line 2: Kd before any newmtl",
    # RuntimeError from torch.full: a `d` of 1e56, beyond float32
    "mtl/dissolve-beyond-float32.mtl": r"input\.mtl: line 3: d holds a number beyond the "
                                       r"float32 range",
    # OverflowError: math.isfinite of a 401-digit integer literal (a "number" member)
    "gltf/integer-beyond-float.gltf":
        r"input\.gltf: nodes\[0\]\.translation\[0\] must be a finite number, got 1000",
    # ValueError from json.loads: an integer literal past Python's 4300-digit limit
    "gltf/integer-too-many-digits.gltf":
        r"input\.gltf: bad glTF JSON: Exceeds the limit \(4300 digits\) for integer string",
    # TypeError: np.isfinite of an integer beyond int64 (emissiveStrength 1e39 as digits)
    "gltf/emissive-strength-beyond-int64.gltf":
        r"input\.gltf: material 0: emissiveFactor x emissiveStrength is not finite in float32",
}


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_harness", HERE / "fuzz_harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, Path]:
    """The harness and a folder holding its side files (MTLs, textures, buffers)."""
    harness = _harness()
    folder = tmp_path_factory.mktemp("fuzz")
    harness.write_seeds(folder, folder / "corpus")
    return harness, folder


def test_every_regression_has_its_expected_message() -> None:
    found = sorted(str(p.relative_to(REGRESSIONS)) for p in REGRESSIONS.rglob("*") if p.is_file())
    assert found == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fuzz_regression(fuzz_folder: tuple[ModuleType, Path], name: str) -> None:
    harness, folder = fuzz_folder
    target = name.split("/")[0]
    path, read = harness.make_reader(target, folder)
    path.write_bytes((REGRESSIONS / name).read_bytes())
    with pytest.raises(DiffLodError, match=EXPECTED[name]) as info:
        read()
    assert "\n" not in str(info.value)


def test_seeds_are_read(fuzz_folder: tuple[ModuleType, Path]) -> None:
    """The seed corpus is made of valid files: every seed reads without error."""
    harness, folder = fuzz_folder
    for target in harness.TARGETS:
        seeds = sorted((folder / "corpus" / target).iterdir())
        assert seeds, target
        path, read = harness.make_reader(target, folder)
        for seed in seeds:
            path.write_bytes(seed.read_bytes())
            read()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["obj", "mtl", "gltf", "glb", "image"])
def test_fuzz_briefly(tmp_path: Path, target: str) -> None:
    """A few seconds of coverage-guided fuzzing per reader; any finding fails."""
    cmd = [sys.executable, str(HERE / "fuzz_harness.py"), target, "-max_total_time=4",
           "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", f"-work_dir={tmp_path}/w"]
    if (REGRESSIONS / target).is_dir():
        cmd.append(str(REGRESSIONS / target))  # replayed first, then mutated
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env,
                          timeout=300, check=False)
    log = proc.stdout + proc.stderr
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    assert proc.returncode == 0, log[-4000:]
    assert runs is not None and int(runs.group(1)) > 20, log[-2000:]
    assert not [p for p in tmp_path.iterdir() if p.is_file()], log[-4000:]


def test_array_comparisons_do_not_grow_the_fuzzing_process(
        fuzz_folder: tuple[ModuleType, Path], tmp_path: Path) -> None:
    """atheris keeps every result its comparison hook returns: a numpy array per
    instrumented `buf == 10` in a reader (libFuzzer then stopped the OBJ target
    as out of memory after 85,000 executions). With plain_compare_for_arrays the
    hook computes array comparisons itself, so the result is freed when dropped,
    and scalar comparisons still reach atheris. (Held through a weak reference:
    the process's size would depend on what earlier tests left free in the heap.)"""
    import gc
    import weakref

    import atheris
    import numpy as np

    harness, _ = fuzz_folder
    (tmp_path / "compares.py").write_text("def eq(a, b):\n    return a == b\n")
    sys.path.insert(0, str(tmp_path))
    saved = atheris._trace_cmp
    try:
        with atheris.instrument_imports(include=["compares"]):
            import compares
        big = np.zeros(1 << 10, dtype=np.uint8)

        def kept() -> bool:
            result = compares.eq(big, 0)
            assert bool(result.all())
            ref = weakref.ref(result)
            del result
            gc.collect()
            return ref() is not None

        assert kept()  # atheris's own hook
        harness.plain_compare_for_arrays(atheris)
        assert not kept()
        calls: list[tuple] = []
        atheris._trace_cmp = lambda *a: calls.append(a) or saved(*a)
        harness.plain_compare_for_arrays(atheris)
        assert compares.eq(3, 3) is True and len(calls) == 1  # scalars reach atheris
        assert not kept() and len(calls) == 1
    finally:
        atheris._trace_cmp = saved
        sys.path.remove(str(tmp_path))
        sys.modules.pop("compares", None)
