"""The CPU kernels compiled ahead (render.backends.cpu_warmup, warm_up).

The manifest is held to a real run; the workers' compiles are checked to
land in numba's disk cache and to load from there in a fresh process, with
numba's own compile event counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from numba import types

from difflod.render import backends
from difflod.render.backends import cpu_warmup
from difflod.render.backends.cpu_warmup import Kernel, load_manifest, numba_type, split, type_name

#: cheap kernels (under a second each to compile) for the workers' round trip
CHEAP = ("cpu_texture._small_down", "cpu_texture._small_up", "cpu_antialias._blend",
         "cpu_antialias._scatter_vertices")


def _sub(kernels: list[Kernel], tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    cpu_warmup.write_manifest(kernels, path)
    return path


def test_manifest_type_names_round_trip() -> None:
    kernels = load_manifest()
    assert kernels and all(k.pass_ in cpu_warmup.PASSES for k in kernels)
    for k in kernels:
        for name in k.args:
            assert type_name(numba_type(name)) == name
    assert numba_type("array(float32, 2d, C)") == types.Array(types.float32, 2, "C")
    assert numba_type("bool") == types.boolean and numba_type("int64") == types.int64


def test_type_name_refuses_what_the_manifest_cannot_hold() -> None:
    with pytest.raises(ValueError, match="cannot be listed"):
        type_name(types.Array(types.float32, 2, "C", readonly=True))
    with pytest.raises(ValueError, match="cannot be listed"):
        type_name(types.UniTuple(types.int64, 2))


def test_split_balances_and_keeps_a_shared_callee_in_one_share() -> None:
    ks = [Kernel("m.a", (), "render", 5.0), Kernel("m.b", (), "render", 4.0),
          Kernel("m.c", (), "train", 3.0, ("m.f",)), Kernel("m.d", (), "train", 3.0, ("m.f",)),
          Kernel("m.e", (), "train", 1.0)]
    shares = split(ks, 2)
    names = [{k.name for k in s} for s in shares]
    assert sorted(n for s in names for n in s) == ["m.a", "m.b", "m.c", "m.d", "m.e"]
    assert any({"m.c", "m.d"} <= s for s in names)          # they share m.f
    loads = sorted(sum(k.seconds for k in s) for s in shares)
    assert loads == [7.0, 9.0]     # longest first, each to the lighter share: {c d, e}, {a, b}
    assert len(split(ks, 10)) == 4  # c and d are one unit
    assert [len(s) for s in split(ks, 1)] == [5]
    assert split([], 3) == []


def test_warm_up_compiles_only_for_the_cpu_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(cpu_warmup, "compile_kernels",
                        lambda passes, **kw: calls.append(tuple(passes)))
    backends.warm_up("torch", "cpu", train=True)
    assert calls == []
    backends.warm_up("cpu", "cpu", train=True)
    backends.warm_up(None, torch.device("cpu"), train=False)
    assert calls == [("render", "train"), ("render",)]


def test_broken_entries_fall_back_to_the_first_call(tmp_path: Path) -> None:
    real = {k.name: k for k in load_manifest()}["cpu_texture._small_up"]
    path = _sub([Kernel("cpu_texture._gone", ("int64",), "render"),
                 Kernel("no_module.f", ("int64",), "render"),
                 Kernel(real.name, ("int64",) * len(real.args), "render")], tmp_path, "bad.json")
    report = cpu_warmup.compile_kernels(processes=1, manifest=path)
    assert report.failed == ["cpu_texture._gone", "no_module.f", real.name]
    assert report.compiled == [] and report.processes == 1
    with pytest.raises(ValueError, match="unknown passes"):
        cpu_warmup.compile_kernels(["forward"], manifest=path)


_RUN = """
import json, sys
from numba.core import event
from difflod.render.backends.cpu_warmup import compile_kernels
events = []
class Count(event.Listener):  # compiles that ran: a cache probe's end carries its exception
    def on_start(self, ev): pass
    def on_end(self, ev):
        exc = ev._exc_details  # (numba's Event.is_failed reads it the other way round)
        if exc is None or exc[0] is None: events.append(ev.data["dispatcher"].py_func.__name__)
event.register("numba:compile", Count())
r = compile_kernels(processes=int(sys.argv[2]), manifest=sys.argv[1])
print(json.dumps({"cached": r.cached, "compiled": r.compiled, "failed": r.failed,
                  "processes": r.processes, "here": sorted(set(events))}))
"""


def test_workers_compile_into_the_disk_cache_and_a_fresh_process_loads_it(
        tmp_path: Path) -> None:
    kernels = [k for k in load_manifest() if k.name in CHEAP]
    assert len(kernels) == len(CHEAP)
    path = _sub(kernels, tmp_path, "cheap.json")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", _RUN, str(path), "2"], env=env,
                             capture_output=True, text=True, timeout=600, check=True)
        return json.loads(out.stdout.splitlines()[-1])

    first = run()
    assert first["processes"] == 2 and first["failed"] == [] and first["cached"] == []
    assert sorted(first["compiled"]) == sorted(CHEAP)
    # this process compiled its own share only: the worker's kernels were loaded
    shares = [{k.name.split(".")[1] for k in s} for s in split(kernels, 2)]
    assert shares[0] <= set(first["here"]) and not shares[1] & set(first["here"])
    assert len(list((tmp_path / "cache").rglob("*.nbi"))) >= len(CHEAP)
    second = run()
    assert sorted(second["cached"]) == sorted(CHEAP)
    assert second["compiled"] == [] and second["processes"] == 0 and second["here"] == []


def test_nothing_to_compile_when_numba_runs_python(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    monkeypatch.setattr(cpu_warmup, "_load_cached", lambda k: pytest.fail("probed"))
    report = cpu_warmup.compile_kernels(on_compile=lambda *a: pytest.fail("announced"))
    assert (report.cached, report.compiled, report.failed, report.processes) == ([], [], [], 0)


@pytest.mark.parametrize("text", [None, "{not json", '{"kernels": [{"name": "x"}]}'])
def test_an_unreadable_manifest_leaves_the_compiling_to_the_first_calls(
        tmp_path: Path, text: str | None) -> None:
    path = tmp_path / "cpu_kernels.json"
    if text is not None:
        path.write_text(text)
    report = cpu_warmup.compile_kernels(manifest=path, on_compile=lambda *a: pytest.fail("x"))
    assert (report.cached, report.compiled, report.failed, report.processes) == ([], [], [], 0)
