"""The CPU kernel list (run/kernel_list.py) against what a real run calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from difflod.render.backends.cpu_warmup import load_manifest


def test_manifest_lists_what_a_real_run_calls(tmp_path: Path) -> None:
    """Fails when a kernel or its argument types changed: rewrite the manifest with
    `python -m difflod.run.kernel_list`."""
    out = tmp_path / "recorded.json"
    subprocess.run([sys.executable, "-m", "difflod.run.kernel_list", "--record",
                    str(out)], check=True, timeout=900, capture_output=True)
    listed = load_manifest()
    callees = {c for k in listed for c in k.calls}
    recorded = [k for k in load_manifest(out) if k.name not in callees]
    assert {(k.name, k.args, k.pass_) for k in recorded} == \
        {(k.name, k.args, k.pass_) for k in listed}
