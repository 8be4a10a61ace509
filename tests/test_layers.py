"""The package's layers (DESIGN.md, "Layers"): no import climbs to a higher layer, no cycles.

Imports are read with `ast` (nothing is imported), including the ones inside
functions and under TYPE_CHECKING: a lazy import still ties two modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "difflod"

#: lowest first. A module may import its own package and any package of a lower
#: layer; packages of one layer never import each other. Keep in step with DESIGN.md.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("mesh", "config"),
    ("geometry", "scene"),
    ("io", "assets", "shading"),
    ("render", "models", "info"),
    ("base",),
    ("optimize", "evaluate"),
    ("run",),
    ("cli",),
    ("__main__", "__init__"),
)
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("difflod", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 2:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    """The layer unit of a module: its top package or top-level module under difflod."""
    return module.split(".")[1] if module != "difflod" else "__init__"


def _resolve(name: str) -> str | None:
    """The longest known module that `name` (a module or module.attribute) names."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    """The difflod modules that `module` imports, anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package[: len(package) - node.level + 1]
                base = ".".join(stem + ([base] if base else []))
            # `from difflod.render import pipeline` imports difflod.render.pipeline;
            # `from difflod.io import save` imports difflod.io
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            names = subs + ([base] if len(subs) < len(node.names) else [])
        for name in names:
            target = _resolve(name)
            # a module that imports its own package's __init__ (the interface a
            # registry like render/backends declares) ties nothing new
            if target is not None and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _climbs(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in graph.items():
        for dst in targets:
            a, b = _unit(src), _unit(dst)
            if a != b and RANK[b] >= RANK[a]:
                bad.append(f"{src} -> {dst}")
    return sorted(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer() -> None:
    units = {_unit(m) for m in MODULES}
    assert units <= set(RANK), f"give these a layer in LAYERS: {sorted(units - set(RANK))}"


def test_no_import_climbs_to_a_higher_layer() -> None:
    assert _climbs(GRAPH) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("edge", [("difflod.render.pipeline", "difflod.optimize.trainer"),
                                  ("difflod.optimize.trainer", "difflod.evaluate.metrics"),
                                  ("difflod.evaluate.evaluate", "difflod.optimize.trainer"),
                                  ("difflod.scene.views", "difflod.render.pipeline")])
def test_the_check_sees_a_climb(edge: tuple[str, str]) -> None:
    src, dst = edge
    assert _climbs({src: {dst}}) == [f"{src} -> {dst}"]


def test_the_check_sees_a_cycle() -> None:
    graph = {"difflod.optimize.a": {"difflod.optimize.b"}, "difflod.optimize.b": {"difflod.optimize.a"}}
    assert _cycles(graph) == [["difflod.optimize.a", "difflod.optimize.b"]]


def test_relative_and_package_imports_are_read(tmp_path: Path) -> None:
    path = tmp_path / "views.py"
    path.write_text("from ..render import pipeline\nfrom difflod import assets\n"
                    "def f():\n    from difflod.optimize.trainer import Trainer\n")
    found = _imports("difflod.scene.views", path)
    assert found == {"difflod.render.pipeline", "difflod.assets", "difflod.optimize.trainer"}
