"""The list of CPU kernels that render/backends/cpu_warmup.py compiles ahead.

    python -m difflod.run.kernel_list [--out PATH]

rewrites render/backends/cpu_kernels.json after a CPU kernel, or the types of
its arguments, changed (tests/render/test_cpu_warmup.py fails until then):

1. `record`, in a fresh process: the kernels and argument types that a small
   real run calls — the demo's reference drawn without gradients (pass
   "render"), then `simplify` with the demo's settings scaled down (pass
   "train": what a training step, its progress pictures and its evaluation
   add);
2. each kernel compiled alone, in a fresh process with an empty numba cache:
   the seconds it took (cpu_warmup balances its shares by them) and the
   compiled functions of the package it called (kernels that share one are
   compiled in one process); a function that only other kernels call is not
   listed;
3. the list written.

It lives in the run layer because step 1 runs `simplify`; it takes a few
minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from difflod.render.backends.cpu_warmup import (
    MANIFEST,
    Kernel,
    load_manifest,
    type_name,
    write_manifest,
)

__all__ = ["compiled_signatures", "main", "record"]

_MODULE = "difflod.run.kernel_list"
_BACKENDS = "difflod.render.backends"


def compiled_signatures() -> dict[str, list[tuple]]:
    """name -> signatures of every compiled, not inlined, numba function of the
    backends' cpu_* modules, in this process."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import difflod.render.backends as pkg

    found: dict[str, list[tuple]] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("cpu_") or info.name == "cpu_warmup":
            continue
        module = importlib.import_module(f"{_BACKENDS}.{info.name}")
        for attr, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.signatures \
                    and obj.targetoptions.get("inline") != "always":
                found[f"{info.name}.{attr}"] = list(obj.signatures)
    return found


def record() -> list[Kernel]:
    """The kernels and signatures a small real run calls, in this process (run it
    in a fresh one: an earlier call's signatures would be listed too)."""
    import torch

    from difflod.evaluate.evaluate import render_views
    from difflod.models import open_model
    from difflod.run.demo import DEMO_SETTINGS
    from difflod.run.simplify import simplify, simplify_config
    from difflod.scene.views import fixed_views

    spec = "asset:spiky?triangles=3000&texture_res=64"
    with torch.no_grad():
        render_views(open_model(spec), fixed_views(2), 32, backend="cpu")
    render = compiled_signatures()
    small = {**DEMO_SETTINGS, "iter": 2, "batch": 2, "train_res": 32, "texture_res": [64, 64],
             "display_res": 32, "eval_views": 2, "eval_res": 32, "save_interval": 1,
             "backend": "cpu", "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        config = simplify_config().replace(**{**small, "out_dir": tmp})
        simplify(spec, 300, tmp, config=config, quiet=True)
    kernels = []
    for name, sigs in compiled_signatures().items():
        for sig in sigs:
            pass_ = "render" if sig in render.get(name, []) else "train"
            kernels.append(Kernel(name, tuple(type_name(t) for t in sig), pass_))
    return kernels


def _time_alone(kernel: Kernel) -> tuple[float, list[str]]:
    """(seconds, compiled functions of the backends called) of compiling `kernel`
    in this process, whose numba cache must be empty."""
    from numba.core import event

    names: list[str] = []

    class _Watch(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            d = ev.data["dispatcher"]
            mod = d.py_func.__module__
            if mod.startswith(_BACKENDS + ".") and d.targetoptions.get("inline") != "always":
                names.append(f"{mod.rpartition('.')[2]}.{d.py_func.__name__}")

        def on_end(self, ev: event.Event) -> None:
            pass

    t0 = time.perf_counter()
    with event.install_listener("numba:compile", _Watch()):
        kernel.dispatcher().compile(kernel.signature())
    return time.perf_counter() - t0, [n for n in names if n != kernel.name]


def _run_self(args: list[str], cache: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-m", _MODULE, *args], env=env, check=True)


def write(path: Path) -> None:
    """Steps 1-3 of the module docstring, into `path`."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "recorded.json"
        _run_self(["--record", str(listing)], Path(tmp) / "cache-record")
        timed = []
        for i, k in enumerate(load_manifest(listing)):
            out = Path(tmp) / f"time{i}.json"
            _run_self(["--time", str(listing), k.name, str(out)], Path(tmp) / f"cache{i}")
            t = json.loads(out.read_text())
            timed.append(Kernel(k.name, k.args, k.pass_, t["seconds"], tuple(t["calls"])))
            print(f"{k.name:40s} {t['seconds']:6.1f} s  calls {t['calls']}", flush=True)
    callees = {c for k in timed for c in k.calls}
    write_manifest([k for k in timed if k.name not in callees], path)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog=f"python -m {_MODULE}",
                                description="rewrite the CPU kernel list (cpu_kernels.json)")
    p.add_argument("--out", type=Path, default=MANIFEST)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--record", type=Path, metavar="OUT",
                   help="only step 1, listed into OUT (without seconds or calls)")
    g.add_argument("--time", nargs=3, metavar=("LIST", "NAME", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.record is not None:
        write_manifest(record(), a.record)
    elif a.time is not None:
        kernel = {k.name: k for k in load_manifest(Path(a.time[0]))}[a.time[1]]
        seconds, calls = _time_alone(kernel)
        Path(a.time[2]).write_text(json.dumps({"seconds": seconds, "calls": calls}))
    else:
        write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
