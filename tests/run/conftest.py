"""Fixtures of the run tests: `check_outputs` opens every file a run left in a
folder with an independent reader and lists those that are not complete."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from difflod.io import load
from difflod.io.atomic import is_temp_name
from difflod.run.lock import LOCK_NAME


def _check(path: Path) -> None:
    """Raise unless `path` is a complete file of its kind."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif suffix in (".png", ".webp"):
        with Image.open(path) as im:
            im.load()  # decodes every row: a truncated file raises
    elif suffix in (".glb", ".obj"):
        load(path)
    elif suffix == ".mtl":
        path.read_text(encoding="utf-8")
    elif suffix == ".html":
        if not path.read_text(encoding="utf-8").rstrip().endswith("</html>"):
            raise ValueError("no </html> at the end")
    elif suffix == ".pt":
        torch.load(path, weights_only=False)
    else:
        raise ValueError("a file no run writes")


def _check_outputs(folder: Path) -> tuple[list[str], list[str]]:
    """(files that are incomplete or unknown, with the reason; leftover temporary files)."""
    bad, temps = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name == LOCK_NAME:
            continue
        if is_temp_name(path.name):
            temps.append(str(path.relative_to(folder)))
            continue
        try:
            _check(path)
        except Exception as e:  # noqa: BLE001 - any failure to read means incomplete
            bad.append(f"{path.relative_to(folder)}: {type(e).__name__}: {e}")
    return bad, temps


@pytest.fixture
def check_outputs() -> Callable[[Path], tuple[list[str], list[str]]]:
    """`check_outputs(folder) -> (incomplete, temporary)`: every file is read back
    (JSON parsed, PNG/WebP decoded, GLB/OBJ loaded, checkpoint unpickled); a
    file that fails, or one no run writes, is listed in `incomplete`; files
    named like io.atomic's temporaries are listed in `temporary`."""
    return _check_outputs
