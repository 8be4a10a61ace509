"""Fixtures of the run tests: `check_outputs` opens every file a run left in a
folder (run/output_check.py: JSON parsed, images decoded, models loaded) and
lists those that are not complete; `simplify_cli` runs `difflod simplify` with a
config file, as a module's shared run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from difflod.cli import main
from difflod.run.output_check import check_outputs as check_outputs_of


def _check_outputs(folder: Path) -> tuple[list[str], list[str]]:
    """(files that are incomplete or unknown, with the reason; leftover temporary files)."""
    _, bad, temps = check_outputs_of(folder)
    return bad, [str(t.relative_to(folder)) for t in temps]


@pytest.fixture
def check_outputs() -> Callable[[Path], tuple[list[str], list[str]]]:
    """`check_outputs(folder) -> (incomplete, temporary)`: every file is read back
    (JSON parsed, PNG/WebP decoded, GLB/OBJ loaded, checkpoint unpickled); a
    file that fails, or one no run writes, is listed in `incomplete`; files
    named like io.atomic's temporaries are listed in `temporary`."""
    return _check_outputs


@pytest.fixture(scope="session")
def simplify_cli() -> Callable[[Path, str, str, dict], Path]:
    """`simplify_cli(root, reference, triangles, config)`: `difflod simplify
    reference --triangles triangles -o root/out` with `config` written to
    root/cfg.json, quiet; asserts exit 0 and returns root/out."""
    def run(root: Path, reference: str, triangles: str, config: dict) -> Path:
        cfg = root / "cfg.json"
        cfg.write_text(json.dumps(config))
        out = root / "out"
        assert main(["simplify", reference, "--triangles", triangles, "-o", str(out),
                     "--config", str(cfg), "--quiet"]) == 0
        return out

    return run
