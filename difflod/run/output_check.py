"""Is every file in an output folder complete? (read back, each by its kind)

Used to check what a killed run left behind (tests/run, bench/killresume.py):
JSON is parsed, PNG/WebP decoded row by row, GLB/OBJ loaded, MTL read as
text, HTML must end with `</html>`, a checkpoint must unpickle. A file that
fails, or one of a kind no run writes, is incomplete; files named like
io.atomic's temporaries and the folder's lock file are not outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

from difflod.io.atomic import is_temp_name
from difflod.run.lock import LOCK_NAME

__all__ = ["check_file", "check_outputs"]


def check_file(path: Path) -> None:
    """Raise unless `path` is a complete file of its kind."""
    import torch
    from PIL import Image

    from difflod.io import load

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


def check_outputs(folder: Path) -> tuple[list[Path], list[str], list[Path]]:
    """(the output files, "name: why" of each incomplete one, leftover temporary files)."""
    files, bad, temps = [], [], []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if path.name == LOCK_NAME:
            continue
        if is_temp_name(path.name):
            temps.append(path)
            continue
        files.append(path)
        try:
            check_file(path)
        except Exception as e:  # noqa: BLE001 - any failure to read means incomplete
            bad.append(f"{path.relative_to(folder)}: {type(e).__name__}: {e}")
    return files, bad, temps
