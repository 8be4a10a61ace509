"""The numba-cuda launch path (backends/cuda_launch.py): direct launches equal the dispatcher's.

The first launch of a kernel with a given argument signature goes through
numba's dispatcher (compiling it); later ones pass the tensors straight to
the compiled kernel. Both must see the same arrays (shapes, strides, data)
and scalars (ints, floats, bools, NumPy scalars): a kernel writes what it
sees, and the launches' outputs are compared with the expected values, on a
GPU. Without one, the same kernel runs in numba's CUDA simulator (subprocess).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from difflod.render.backends.cuda_launch import cuda, launch

if cuda is not None:

    @cuda.jit
    def probe_kernel(a, m, out, k, x, y, flag):  # pragma: no cover - numba
        i = cuda.grid(1)
        if i < a.shape[0]:
            out[i, 0] = a[i] * x + k
            out[i, 1] = m[i % m.shape[0], i % m.shape[1]] + y
            out[i, 2] = m.shape[0] * 100 + m.shape[1] + (1 if flag else 0)


def run_probe(device: str, reps: int) -> list[torch.Tensor]:
    """Launch the probe kernel `reps` times with one signature; the outputs."""
    outs = []
    for rep in range(reps):
        a = torch.arange(300, dtype=torch.float32, device=device) + rep
        m = torch.arange(35, dtype=torch.float64, device=device).reshape(5, 7) * (rep + 1)
        out = torch.zeros(300, 3, dtype=torch.float64, device=device)
        with launch(out.device) as run:
            run(probe_kernel, 300, a, m, out, 3 + rep, 0.5, np.float32(2.0), rep == 1)
        outs.append(out.cpu())
    return outs


def _expected(rep: int) -> torch.Tensor:
    i = torch.arange(300, dtype=torch.float64)
    m = torch.arange(35, dtype=torch.float64).reshape(5, 7) * (rep + 1)
    return torch.stack([(i + rep) * 0.5 + 3 + rep, m[i.long() % 5, i.long() % 7] + 2.0,
                        torch.full_like(i, 507 + (rep == 1))], dim=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_direct_launch_matches_dispatcher_on_gpu() -> None:
    from difflod.render.backends import cuda_launch

    for rep, out in enumerate(run_probe("cuda", 3)):
        torch.testing.assert_close(out, _expected(rep), rtol=0, atol=0)
    direct = [v for k, v in cuda_launch._COMPILED.items() if k[0] is probe_kernel]
    assert len(direct) == 1 and direct[0], "the later launches did not take the direct path"


def test_launcher_in_numba_simulator(run_simulated) -> None:
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_cuda_launch import run_probe
print("ROWS", [o[7].tolist() for o in run_probe("cpu", 2)])
"""
    stdout = run_simulated(script, timeout=300)
    expect = [_expected(rep)[7].tolist() for rep in range(2)]
    assert f"ROWS {expect}" in stdout, stdout


def _jit_calls(tree: ast.AST) -> list[ast.AST]:
    """Every `cuda.jit` and `cuda.jit(...)` decorator or call in a module's tree."""
    def is_jit(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "jit"
                and isinstance(node.value, ast.Name) and node.value.id == "cuda")

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and is_jit(node.func):
            found.append(node)
        elif isinstance(node, ast.FunctionDef):
            found.extend(d for d in node.decorator_list if is_jit(d))
    return found


def test_every_numba_cuda_kernel_is_cached_on_disk() -> None:
    """Every kernel of the package is `cuda.jit(cache=True)` (device functions
    are compiled into their kernels): without the cache each run of a GPU job
    spends its first step compiling (16 s of `bench/simplify.py --setting h200`
    on an H100)."""
    package = Path(__file__).resolve().parents[2] / "difflod"
    kernels, uncached = 0, []
    for path in sorted(package.rglob("*.py")):
        for node in _jit_calls(ast.parse(path.read_text(), str(path))):
            words = {k.arg: k.value for k in getattr(node, "keywords", [])}
            device = words.get("device")
            if isinstance(device, ast.Constant) and device.value is True:
                continue
            kernels += 1
            cache = words.get("cache")
            if not (isinstance(cache, ast.Constant) and cache.value is True):
                uncached.append(f"{path.relative_to(package)}:{node.lineno}")
    assert kernels >= 19 and not uncached, (kernels, uncached)
