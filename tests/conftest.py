"""Shared fixtures: the cuda fixture skips GPU tests where torch sees no GPU;
run_simulated runs a script under numba's CUDA simulator; aot_eager puts
shading.compiled on torch.compile's "aot_eager" backend (the compiled paths'
graph capture without a compiler); require_tool fails a
test whose outside tool (chromium, the glTF validator) is missing under CI=true,
and skips it elsewhere with the way to install it; threejs does the same for
the three.js renderer (headless Chromium and the npm package three)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch


@pytest.fixture
def cuda() -> torch.device:
    """The CUDA device; skips the test (with a reason) where there is none."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU backend tests run only on a GPU machine")
    return torch.device("cuda")


def _run_simulated(script: str, timeout: int = 600) -> str:
    """Run `script` with `python -c` under NUMBA_ENABLE_CUDASIM=1 (chosen before
    numba.cuda is first imported, hence a fresh process); assert it exits 0;
    return its stdout."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture
def run_simulated() -> Callable[..., str]:
    """`run_simulated(script, timeout=600) -> stdout`: the CUDA kernels' tests without a GPU."""
    return _run_simulated


def _require_tool(found: bool, what: str, install: str) -> None:
    if found:
        return
    message = f"{what} is not installed ({install})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide it (.ci/run installs it or stops)",
                    pytrace=False)
    pytest.skip(message)


@pytest.fixture
def require_tool() -> Callable[[bool, str, str], None]:
    """`require_tool(found, what, install)`: under CI=true a missing tool fails the test
    (a skipped check must not pass CI); on a developer's machine it skips, saying how
    to install the tool."""
    return _require_tool


_VALIDATOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          ".ci", "node", "node_modules", "gltf-validator")
_VALIDATE_JS = (
    "const v=require(process.argv[1]),fs=require('fs'),p=require('path');"
    "(async()=>{const out=[];for(const f of process.argv.slice(2)){"
    "const r=await v.validateBytes(new Uint8Array(fs.readFileSync(f)),{uri:p.basename(f),"
    "externalResourceFunction:u=>new Promise((ok,no)=>{try{ok(new Uint8Array("
    "fs.readFileSync(p.join(p.dirname(f),decodeURIComponent(u)))))}catch(e){no(''+e)}})});"
    "out.push(r)}console.log(JSON.stringify(out))})()"
    ".catch(e=>{console.error(e);process.exit(2)})")


@pytest.fixture
def gltf_validator(require_tool: Callable[[bool, str, str], None]) -> Callable[..., list]:
    """`gltf_validator(paths) -> reports`: the Khronos glTF validator's JSON report of
    each .glb/.gltf (its "issues" hold numErrors, numWarnings and the messages: severity
    0 error, 1 warning, 2 info, 3 hint), in one node process; needs node and
    .ci/node/node_modules/gltf-validator (require_tool)."""
    import json
    import shutil

    require_tool(os.path.isdir(_VALIDATOR) and shutil.which("node") is not None,
                 "the Khronos glTF validator",
                 "install node and npm, then: npm install --prefix .ci/node gltf-validator")

    def validate(paths: list) -> list[dict]:
        out = subprocess.run(["node", "-e", _VALIDATE_JS, _VALIDATOR, *map(str, paths)],
                             check=False, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    return validate


@pytest.fixture
def aot_eager(monkeypatch: pytest.MonkeyPatch):
    """shading.compiled on the "aot_eager" backend, with torch.compile's caches fresh."""
    import torch._dynamo

    from difflod.shading import compiled as compilation

    monkeypatch.setattr(compilation, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope="session")
def threejs() -> None:
    """Headless Chromium and the npm package three, for difflod's three.js renderer:
    skips the test where they are missing, fails it under CI (.ci/run installs them)."""
    from difflod.evaluate.threejs import RendererUnavailable, find_threejs

    try:
        find_threejs()
    except RendererUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the three.js renderer: {exc}")
        pytest.skip(f"{exc} (.ci/run installs both)")
