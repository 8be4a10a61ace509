"""The CPU kernels a run calls, compiled on its first run in parallel processes.

numba compiles a kernel at its first call, one after another in the calling
process: the 27 kernels of a CPU training step took 66 to 82 s on this
project's 2-core machine (the first `difflod demo`), and every later run loads
them from numba's disk cache in about a second. Which kernels a run calls, and
with which argument types, is known ahead, so a first run compiles them side
by side instead:

- cpu_kernels.json (beside this module) lists them: each kernel's argument
  types (numba's type names), its pass ("render": a render without
  gradients; "train": what a training step adds), the seconds it took to
  compile alone, and the compiled functions it calls that it does not inline
  (kernels sharing one are compiled in the same process, so that it is
  compiled once). `python -m difflod.run.kernel_list` rewrites the file
  from a small real run; a test fails when a kernel or a signature changed
  and the file was not rewritten.
- `compile_kernels` loads the listed kernels that are cached. It splits the
  others into one share per numba thread of the run (one per core unless
  capped, at most MAX_PROCESSES; the longest first, each to the least loaded
  share): this process compiles one share, a worker process (`python -m
  difflod.render.backends.cpu_warmup --compile NAME...`) each other one, and
  each writes numba's disk cache, from which this process then loads the
  workers' kernels. Processes, because numba compiles under one global lock
  per process: threads would take turns.

Nothing depends on the warm-up for being right: a kernel whose worker failed,
or that the file does not list (a float64 test, a shape of run the file's
small run does not reach), is compiled at its first call, as without it.
Measured on this machine's 2 cores, an empty cache: the 27 kernels in two
processes took 40 s of wall time against 66 to 82 s in one; the train stage
of a 3-iteration `difflod demo`, 78 s before, 39 s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST", "MAX_PROCESSES", "PASSES", "Kernel", "WarmupReport", "compile_kernels",
           "dispatcher", "load_manifest", "numba_type", "split", "type_name",
           "write_manifest"]

#: the kernels a run calls (see the module docstring)
MANIFEST = Path(__file__).with_name("cpu_kernels.json")
#: "render": a render without gradients; "train": what a training step adds to it
PASSES = ("render", "train")
#: at most this many processes compile at once (each holds torch and numba, ~0.4 GB)
MAX_PROCESSES = 8

_PACKAGE = "difflod.render.backends"
_MODULE = f"{_PACKAGE}.cpu_warmup"  # run as a worker: python -m _MODULE
_ARRAY = re.compile(r"array\((\w+), (\d+)d, ([CFA])\)")


@dataclass(frozen=True)
class Kernel:
    """One kernel of the manifest.

    name: "<module>.<function>" within difflod.render.backends.
    args: its argument types, numba's names ("array(float32, 2d, C)", "int64").
    pass_: "render" or "train" (PASSES).
    seconds: how long it took to compile alone (only to balance the shares).
    calls: the compiled, not inlined, functions of this package it calls.
    """

    name: str
    args: tuple[str, ...]
    pass_: str
    seconds: float = 0.0
    calls: tuple[str, ...] = ()

    def dispatcher(self) -> Any:
        """The kernel's numba dispatcher (imports its module)."""
        return dispatcher(self.name)

    def signature(self) -> tuple:
        """Its argument types as numba types."""
        return tuple(numba_type(a) for a in self.args)

    def to_json(self) -> dict:
        return {"name": self.name, "pass": self.pass_, "args": list(self.args),
                "seconds": round(self.seconds, 2), "calls": list(self.calls)}

    @classmethod
    def from_json(cls, d: dict) -> Kernel:
        return cls(name=d["name"], args=tuple(d["args"]), pass_=d["pass"],
                   seconds=float(d.get("seconds", 0.0)), calls=tuple(d.get("calls", ())))


@dataclass
class WarmupReport:
    """What `compile_kernels` did.

    cached: kernels loaded from the disk cache at once.
    compiled: kernels compiled now (here or by a worker) and loaded.
    failed: kernels still not compiled (compiled at their first call instead).
    processes: how many processes compiled (this one included); 0 if none.
    seconds: wall time of the compiling.
    """

    cached: list[str] = field(default_factory=list)
    compiled: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    processes: int = 0
    seconds: float = 0.0


# ----------------------------------------------------------------------------- numba types

def type_name(t: Any) -> str:
    """numba type -> its name in the manifest; ValueError for a type it cannot hold
    (anything but C/F/A-layout writable aligned arrays and numeric or bool scalars)."""
    from numba import types

    if isinstance(t, types.Array):
        if t.mutable and t.aligned and isinstance(t.dtype, (types.Number, types.Boolean)):
            return f"array({t.dtype.name}, {t.ndim}d, {t.layout})"
    elif isinstance(t, (types.Number, types.Boolean)):
        return t.name
    raise ValueError(f"cpu_warmup: argument type {t} cannot be listed")


def numba_type(name: str) -> Any:
    """A manifest type name -> the numba type (the inverse of type_name)."""
    import numba
    import numpy as np
    from numba import types

    m = _ARRAY.fullmatch(name)
    if m:
        return types.Array(numba.from_dtype(np.dtype(m[1])), int(m[2]), m[3])
    return numba.from_dtype(np.dtype(name))


def dispatcher(name: str) -> Any:
    """The numba dispatcher of kernel `name` ("<module>.<function>"; imports the module)."""
    import importlib

    module, _, fn = name.partition(".")
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), fn)


# ----------------------------------------------------------------------------- the manifest

def load_manifest(path: Path = MANIFEST) -> list[Kernel]:
    """The kernels listed in `path` (cpu_kernels.json)."""
    return [Kernel.from_json(d) for d in json.loads(Path(path).read_text())["kernels"]]


def write_manifest(kernels: Sequence[Kernel], path: Path) -> None:
    """Write `kernels` to `path`, one kernel a line."""
    about = ("the CPU kernels a run calls (render/backends/cpu_warmup.py); written by "
             "`python -m difflod.run.kernel_list`")
    rows = ",\n  ".join(json.dumps(k.to_json()) for k in kernels)
    path.write_text(f'{{"about": {json.dumps(about)},\n "kernels": [\n  {rows}\n ]\n}}\n')


# ----------------------------------------------------------------------------- compiling

class _Uncached(Exception):
    pass


def _broken() -> tuple[type[BaseException], ...]:
    """What a kernel the manifest names may raise when it no longer fits the code
    (renamed, retyped): it is then compiled at its first call, as without a warm-up."""
    from numba.core.errors import NumbaError

    return (ImportError, AttributeError, TypeError, ValueError, NumbaError)


def _load_cached(kernel: Kernel) -> bool:
    """Install `kernel` from numba's disk cache; False (nothing compiled) if not there.

    numba raises "numba:compile" only after its cache missed; the listener
    stops the compile there.
    """
    from numba.core import event

    class _Stop(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            raise _Uncached

        def on_end(self, ev: event.Event) -> None:
            pass

    with event.install_listener("numba:compile", _Stop()):
        try:
            kernel.dispatcher().compile(kernel.signature())
        except (_Uncached, *_broken()):
            return False
    return True


def _compile(kernel: Kernel) -> bool:
    """Compile `kernel` here (loading it if cached); False if it could not be."""
    try:
        kernel.dispatcher().compile(kernel.signature())
    except _broken():
        return False
    return True


def split(kernels: Sequence[Kernel], parts: int) -> list[list[Kernel]]:
    """`kernels` in at most `parts` non-empty shares of about equal seconds.

    Kernels that call the same compiled function go to one share (together one
    unit); units are placed longest first, each into the share with the
    fewest seconds so far.
    """
    units: list[list[Kernel]] = []
    owner: dict[str, list[Kernel]] = {}  # called function -> its unit
    for k in kernels:
        joined = list({id(owner[c]): owner[c] for c in k.calls if c in owner}.values())
        unit = [k]
        for u in joined:
            unit = u + unit
            units.remove(u)
        units.append(unit)
        for member in unit:
            for c in member.calls:
                owner[c] = unit
    units.sort(key=lambda u: -sum(k.seconds for k in u))
    shares: list[list[Kernel]] = [[] for _ in range(max(1, min(parts, len(units))))]
    load = [0.0] * len(shares)
    for unit in units:
        i = load.index(min(load))
        shares[i] += unit
        load[i] += sum(k.seconds for k in unit)
    return [s for s in shares if s]


def _threads() -> int:
    """This process's numba threads: one per core, unless capped (a batch worker)."""
    import numba

    return numba.get_num_threads()


def compile_kernels(passes: Iterable[str] = PASSES, *, processes: int | None = None,
                    manifest: Path = MANIFEST,
                    on_compile: Callable[[int, int], None] | None = None) -> WarmupReport:
    """Make the manifest's kernels of `passes` ready in this process.

    Cached kernels are loaded; the others are compiled in up to `processes`
    processes, this one included (default: as many as this process has numba
    threads, one per core unless capped as in a batch worker; at most
    MAX_PROCESSES), and loaded from the disk cache the workers wrote.
    `on_compile(kernels, processes)` is called before compiling, if anything
    is to be compiled. Never raises for a kernel that fails to compile: it is
    in the report's `failed` and compiles at its first call. Nothing is done
    under NUMBA_DISABLE_JIT or without a readable manifest.
    """
    import numba

    wanted = set(passes)
    bad = wanted - set(PASSES)
    if bad:
        raise ValueError(f"compile_kernels: unknown passes {sorted(bad)}; expected {PASSES}")
    report = WarmupReport()
    if numba.config.DISABLE_JIT:  # NUMBA_DISABLE_JIT=1: the kernels run as Python
        return report
    try:
        listed = load_manifest(manifest)
    except (OSError, ValueError, KeyError, TypeError):  # no usable list: compiled as called
        return report
    missing: list[Kernel] = []
    for k in listed:
        if k.pass_ not in wanted:
            continue
        if _load_cached(k):
            report.cached.append(k.name)
        else:
            missing.append(k)
    if not missing:
        return report
    shares = split(missing, processes if processes is not None
                   else min(_threads(), MAX_PROCESSES))
    report.processes = len(shares)
    if on_compile is not None:
        on_compile(len(missing), len(shares))
    t0 = time.perf_counter()
    # the workers import difflod from where this process did (a path added at run time too)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    workers = [subprocess.Popen([sys.executable, "-m", _MODULE, "--manifest", str(manifest),
                                 "--compile", *(k.name for k in share)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
               for share in shares[1:]]
    try:
        done = {k.name for k in shares[0] if _compile(k)}
        for w in workers:
            w.wait()
    finally:  # interrupted: no worker outlives the run
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    done |= {k.name for share in shares[1:] for k in share if _load_cached(k)}
    report.seconds = time.perf_counter() - t0
    report.compiled = [k.name for k in missing if k.name in done]
    report.failed = [k.name for k in missing if k.name not in done]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """A worker: compile the named kernels of the manifest into numba's disk cache."""
    import argparse

    p = argparse.ArgumentParser(prog=f"python -m {_MODULE}", description=main.__doc__)
    p.add_argument("--manifest", type=Path, default=MANIFEST)
    p.add_argument("--compile", nargs="+", metavar="NAME", required=True)
    a = p.parse_args(argv)
    by_name = {k.name: k for k in load_manifest(a.manifest)}
    compiled = [_compile(by_name[n]) for n in a.compile if n in by_name]
    return 0 if all(compiled) and len(compiled) == len(a.compile) else 1


if __name__ == "__main__":
    sys.exit(main())
