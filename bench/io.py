"""Benchmark: model file load/save in difflod against trimesh, same files, one run.

Builds the procedural "spiky" asset at --triangles (default 1M), writes it as
OBJ and GLB with difflod, then times:

- load: `difflod.io.load(path)` vs `trimesh.load(path, force="mesh", process=False)`
- save: `difflod.io.save(mesh, path)` vs trimesh's export of the mesh it loaded

Each timing is the best of --repeat runs. The format modules are imported
before timing (trimesh is imported before timing too), so import time
(pygltflib's alone is ~0.5 s) is not counted. Prints a table (format, op, difflod s,
trimesh s, ratio = difflod / trimesh; below 1 means difflod is faster), or JSON
with --json. Usage: python bench/io.py [--triangles N] [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(triangles: int, repeat: int) -> dict[str, object]:
    import trimesh

    import difflod.assets
    import difflod.io
    import difflod.io.gltf
    import difflod.io.gltf_write
    import difflod.io.obj  # imported before timing: timings exclude imports

    mesh = difflod.assets.make("spiky", triangles=triangles, seed=0, texture_res=256)
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for fmt in ("obj", "glb"):
            out = folder / fmt / f"mesh.{fmt}"
            try:
                save_s = _best(lambda out=out: difflod.io.save(mesh, out), repeat)
            except (ImportError, NotImplementedError) as e:
                notes.append(f"{fmt}: difflod writer unavailable ({e}); rows skipped")
                continue
            load_s = _best(lambda out=out: difflod.io.load(out), repeat)
            tm_box: list[object] = []
            tm_load = _best(lambda out=out, box=tm_box: box.append(
                trimesh.load(out, force="mesh", process=False)), repeat)
            tm_out = folder / f"{fmt}_trimesh" / f"mesh.{fmt}"
            tm_out.parent.mkdir()
            tm_save = _best(lambda m=tm_box[-1], t=tm_out: m.export(t), repeat)  # type: ignore[attr-defined]
            for op, ours, theirs in (("load", load_s, tm_load), ("save", save_s, tm_save)):
                rows.append({"format": fmt, "op": op, "difflod_s": round(ours, 4),
                             "trimesh_s": round(theirs, 4), "ratio": round(ours / theirs, 3)})
    return {"triangles": mesh.num_triangles, "vertices": mesh.num_vertices, "repeat": repeat,
            "rows": rows, "notes": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triangles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.triangles < 1 or args.repeat < 1:
        parser.error("--triangles and --repeat must be positive")
    result = run(args.triangles, args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"spiky asset: {result['triangles']} triangles, {result['vertices']} vertices, "
          f"best of {result['repeat']}")
    print(f"{'format':<7}{'op':<6}{'difflod s':>11}{'trimesh s':>11}{'ratio':>8}")
    for r in result["rows"]:  # type: ignore[attr-defined]
        print(f"{r['format']:<7}{r['op']:<6}{r['difflod_s']:>11.3f}{r['trimesh_s']:>11.3f}"
              f"{r['ratio']:>8.2f}")
    for note in result["notes"]:  # type: ignore[attr-defined]
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
