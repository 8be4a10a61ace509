"""What a batch does: one `Job` per model, read from a manifest or a folder.

A **manifest** is a CSV file (a header row, then one row per model) or a
JSON file (a list of objects), with these fields:

- `model` (required): a model file (relative paths are read from the
  manifest's folder) or an `asset:NAME?...` spec (difflod.models);
- `triangles`: the budget, or several (an LOD chain), as counts or fractions
  of the model's own triangle count: `300`, `5%`, `0.05`, `5%,1%` (in CSV,
  quote a list or separate it with `;`; in JSON a number, a string or a
  list). A row without it takes the command line's `--triangles`;
- `name`: the result's folder under OUT (default: from the model's path);
- any other field: a config key of `difflod simplify` for this model
  (`iter`, `train_res`, `learning_rate`, ...; CSV cells are read as JSON
  where they parse, else as text; an empty cell is unset).

A **folder** means every OBJ / glTF / GLB in it, recursively, with the
command line's budgets (the batch's own output folder is skipped).

Model names are unique and filesystem-safe: the relative path without its
suffix, `/` as `__`, any other character outside `[A-Za-z0-9._-]` as `_`;
names that collide (case-insensitively) get the file's suffix, then a
counter.

Anything wrong raises `ManifestError`, one line naming the file and the row
(CSV: its line number; JSON: its 1-based position) — before any model runs.
A budget that does not fit a model (a fraction rounding below 4 triangles,
or at or above the model's own count) is that model's failure only, found
when it runs (`Budget.resolve`).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflod.config import TrainConfig
from difflod.errors import DiffLodError

__all__ = ["MODEL_SUFFIXES", "Budget", "Job", "ManifestError", "parse_budgets", "read_jobs"]

MODEL_SUFFIXES = (".obj", ".gltf", ".glb")
_MIN_TRIANGLES = 4  # simplify's lower bound (run/simplify.py _check_budget)
_ROW_KEYS = ("model", "triangles", "name")
#: config keys a row may not set: the batch decides them
_BATCH_OWNED = ("ref_mesh", "base_mesh", "out_dir")
_RESERVED_NAMES = ("summary.csv", "report.html")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 120


class ManifestError(DiffLodError):
    """A manifest, a folder or a budget given to `difflod batch` is invalid."""


@dataclass(frozen=True)
class Budget:
    """One triangle budget: a count, or a fraction of the model's triangle count."""

    text: str
    count: int | None = None
    fraction: float | None = None

    def resolve(self, triangles: int, model: str) -> int:
        """The count for a model of `triangles` triangles (a fraction is rounded).

        Raises:
            DiffLodError: the count is outside simplify's range [4, triangles).
        """
        n = self.count if self.count is not None else round(float(self.fraction or 0) * triangles)
        if n < _MIN_TRIANGLES or n >= triangles:
            raise DiffLodError(f"{model}: budget {self.text} is {n} triangles, outside "
                               f"[{_MIN_TRIANGLES}, {triangles}) for its {triangles} triangles")
        return n


@dataclass(frozen=True)
class Job:
    """One model of a batch.

    Attributes:
        name: its result folder under OUT (unique, filesystem-safe).
        model: a model file path (absolute) or an `asset:` spec.
        budgets: one budget, or an LOD chain (most triangles first, as given).
        settings: config keys for this model (over the batch's own settings).
        where: the manifest row or file it came from, for messages.
    """

    name: str
    model: str
    budgets: tuple[Budget, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    where: str = ""


def _one_budget(text: str, where: str) -> Budget:
    t = text.strip()
    bad = ManifestError(f"{where}: triangles: {t!r} is not a count or a fraction "
                        f"(e.g. 300, 5%, 0.05)")
    try:
        if t.endswith("%"):
            value = float(t[:-1]) / 100.0
        elif re.fullmatch(r"[+]?\d+", t):
            count = int(t)
            if count < _MIN_TRIANGLES:
                raise ManifestError(f"{where}: triangles: {count} is below the minimum "
                                    f"of {_MIN_TRIANGLES}")
            return Budget(t, count=count)
        else:
            value = float(t)
    except ValueError:
        raise bad from None
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ManifestError(f"{where}: triangles: {t!r} must be a count or a fraction "
                            f"between 0 and 1 (0% and 100%)")
    return Budget(t, fraction=value)


def parse_budgets(value: object, where: str) -> tuple[Budget, ...]:
    """Budgets from text (`"5%,1%"`, `"300;100"`), a number, or a list of those.

    Raises:
        ManifestError: naming `where`, for an empty or malformed budget.
    """
    if isinstance(value, bool):
        raise ManifestError(f"{where}: triangles: expected a count or a fraction, got {value!r}")
    items: Sequence[object]
    if isinstance(value, str):
        items = [p for p in re.split(r"[,;\s]+", value) if p]
    elif isinstance(value, (int, float)):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise ManifestError(f"{where}: triangles: expected a count, a fraction or a list, "
                            f"got {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ManifestError(f"{where}: triangles: expected a count or a fraction, "
                                f"got {item!r}")
        out.append(_one_budget(str(item), where))
    if not out:
        raise ManifestError(f"{where}: triangles: no budget given")
    return tuple(out)


def _safe_name(text: str) -> str:
    name = _UNSAFE.sub("_", text.replace("\\", "/").replace("/", "__")).strip("._")
    return (name or "model")[:_MAX_NAME]


def _default_name(model: str, root: Path) -> str:
    if model.startswith("asset:"):
        return _safe_name(model)
    path = Path(model)
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    return _safe_name(str(rel.with_suffix("")))


def _unique(raw: list[tuple[str, str, bool]]) -> list[str]:
    """Names for (default name, model, explicit?) rows: explicit names must be unique
    already; default names that collide get their suffix, then a counter."""
    taken = {n.lower() for n, _, explicit in raw if explicit} | set(_RESERVED_NAMES)
    out = []
    for name, model, explicit in raw:
        if not explicit:
            if name.lower() in taken:
                suffix = Path(model).suffix.lstrip(".").lower()
                if suffix and not model.startswith("asset:"):
                    name = f"{name}_{suffix}"
            base, k = name, 2
            while name.lower() in taken:
                name, k = f"{base}_{k}", k + 1
        taken.add(name.lower())
        out.append(name)
    return out


def _settings(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    keys = {f for f in TrainConfig.__dataclass_fields__}
    out = {}
    for key, value in row.items():
        if key in _ROW_KEYS:
            continue
        if key in _BATCH_OWNED:
            raise ManifestError(f"{where}: {key!r} is set by the batch; remove it")
        if key not in keys:
            raise ManifestError(f"{where}: unknown field {key!r}; valid: "
                                f"{', '.join(_ROW_KEYS)} and the config keys "
                                f"({', '.join(sorted(keys - set(_BATCH_OWNED)))})")
        out[key] = value
    return out


def _cell(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _csv_rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ManifestError(f"{path}: empty manifest (expected a header row with 'model')")
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    rows = []
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [f.strip() for f in fields]
            if "model" not in header:
                raise ManifestError(f"{path}: line {line}: the header has no 'model' column "
                                    f"(got {', '.join(header)})")
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise ManifestError(f"{path}: line {line}: column {dupes[0]!r} appears twice")
            continue
        if len(fields) > len(header):
            raise ManifestError(f"{path}: line {line}: {len(fields)} cells but the header "
                                f"has {len(header)} columns")
        row = {}
        for key, value in zip(header, fields):
            value = value.strip()
            if value:
                row[key] = value if key in _ROW_KEYS else _cell(value)
        rows.append((f"{path}: line {line}", row))
    return rows


def _json_rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, list):
        raise ManifestError(f"{path}: expected a JSON list of rows "
                            f"({{\"model\": ..., \"triangles\": ...}}), got {type(data).__name__}")
    rows = []
    for i, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise ManifestError(f"{path}: row {i}: expected an object, got {row!r}")
        rows.append((f"{path}: row {i}", row))
    return rows


def _read_manifest(path: Path, budgets: tuple[Budget, ...] | None) -> list[Job]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read manifest: {e}") from None
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path, text)
    elif path.suffix.lower() == ".json":
        rows = _json_rows(path, text)
    else:
        raise ManifestError(f"{path}: a manifest must be .csv or .json (or give a folder)")
    if not rows:
        raise ManifestError(f"{path}: the manifest lists no model")
    raw, pending = [], []
    for where, row in rows:
        model = row.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ManifestError(f"{where}: 'model' is missing or empty")
        model = model.strip()
        if not model.startswith("asset:"):
            file = Path(model) if Path(model).is_absolute() else path.parent / model
            if not file.is_file():
                raise ManifestError(f"{where}: no such model file {model!r} (read from "
                                    f"{path.parent})")
            model = str(file.resolve())
        if "triangles" in row:
            row_budgets = parse_budgets(row["triangles"], where)
        elif budgets is not None:
            row_budgets = budgets
        else:
            raise ManifestError(f"{where}: no 'triangles' for this model and no --triangles")
        name = row.get("name")
        if name is not None and (not isinstance(name, str) or _safe_name(name) != name
                                 or name in _RESERVED_NAMES):
            raise ManifestError(f"{where}: name {name!r} is not a safe folder name "
                                    f"(letters, digits, '.', '_', '-')")
        raw.append((name or _default_name(model, path.parent.resolve()), model, name is not None))
        pending.append((model, row_budgets, _settings(row, where), where))
    explicit = [n.lower() for n, _, e in raw if e]
    for (n, _, e), (_, _, _, where) in zip(raw, pending):
        if e and explicit.count(n.lower()) > 1:
            raise ManifestError(f"{where}: name {n!r} is used by another row")
    return [Job(name, model, b, dict(s), where)
            for name, (model, b, s, where) in zip(_unique(raw), pending)]


def _scan_folder(folder: Path, budgets: tuple[Budget, ...] | None,
                 exclude: Path | None) -> list[Job]:
    if budgets is None:
        raise ManifestError(f"{folder}: a folder needs --triangles (e.g. --triangles 5%,1%)")
    root = folder.resolve()
    skip = exclude.resolve() if exclude is not None else None
    files = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in MODEL_SUFFIXES or not p.is_file():
            continue
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files and folders, temporary files of atomic writes
        if skip is not None and (p == skip or skip in p.parents):
            continue
        files.append(p)
    if not files:
        raise ManifestError(f"{folder}: no model files ({', '.join(MODEL_SUFFIXES)}) in it")
    raw = [(_default_name(str(p), root), str(p), False) for p in files]
    return [Job(name, str(p), budgets, {}, str(p))
            for name, p in zip(_unique(raw), files)]


def read_jobs(source: str | Path, budgets: str | None = None, *,
              exclude: Path | None = None) -> list[Job]:
    """The jobs of a batch: a manifest's rows, or every model file of a folder.

    Args:
        source: a .csv / .json manifest, or a folder.
        budgets: the command line's `--triangles` text (e.g. "5%,1%"); the
            budgets of a folder's models and of manifest rows without their own.
        exclude: a folder to skip while scanning (the batch's output folder).
    Raises:
        ManifestError: one line naming the file and row.
    """
    default = parse_budgets(budgets, "--triangles") if budgets is not None else None
    path = Path(source)
    if path.is_dir():
        return _scan_folder(path, default, exclude)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file or folder")
    return _read_manifest(path, default)
