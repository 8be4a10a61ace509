"""`difflod eval`: compare candidate models with a reference on held-out views.

The stages, in order: open models (files or asset specs, difflod.models) →
evaluate and report (evaluate.report.evaluate_into: the table on the
terminal, and with an output folder metrics.json and report/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from difflod.errors import DiffLodError
from difflod.io.limits import ReadLimits

__all__ = ["candidate_names", "evaluate_models"]


def candidate_names(specs: list[str]) -> list[str]:
    """Short unique names for the table: file names, or whole paths where they clash."""
    short = [c if c.startswith("asset:") else Path(c).name for c in specs]
    return [s if short.count(s) == 1 else c for s, c in zip(short, specs)]


def evaluate_models(reference: str, candidates: list[str], *, out: str | Path | None = None,
                    views: int = 64, res: int = 512, seed: int = 0,
                    backend: str | None = None, renderer: str = "difflod",
                    limits: ReadLimits | None = None) -> dict[str, Any]:
    """Run `difflod eval` on model specs; return the results dict of evaluate.evaluate.

    Args:
        reference, candidates: model files or `asset:NAME?...` specs.
        out: folder for metrics.json and report/, or None (table only).
        views, res, seed: held-out views, their square size, their seed.
        backend: render backend; None or "auto" for the default.
        renderer: "difflod", or "threejs" (the files as three.js shows them).
        limits: what the model files may declare (default `ReadLimits()`).
    Raises:
        DiffLodError: views < 1 or res < 8, or a model that cannot be opened.
    """
    from difflod.evaluate.report import evaluate_into
    from difflod.models import open_model

    if views < 1 or res < 8:
        raise DiffLodError("--views must be >= 1 and --res >= 8")
    ref_mesh = open_model(reference, limits=limits)
    names = candidate_names(candidates)
    meshes = {name: open_model(c, limits=limits) for name, c in zip(names, candidates)}
    files = {name: Path(c) for name, c in zip(names, candidates) if not c.startswith("asset:")}
    if not reference.startswith("asset:"):
        files["reference"] = Path(reference)
    backend = None if backend in (None, "auto") else backend
    return evaluate_into(out, ref_mesh, meshes, views=views, res=res, seed=seed,
                         backend=backend, files=files, renderer=renderer)
