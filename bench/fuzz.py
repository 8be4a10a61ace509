"""Benchmark: coverage-guided fuzzing of every model reader (atheris / libFuzzer).

Runs each target of tests/io/fuzz_harness.py (obj, mtl, gltf, glb, image) in
its own process for --seconds (and at most --runs executions), seeded by
difflod's own writers and tests/io/fuzz_regressions/, and reports per target:
executions, executions per second, coverage (libFuzzer's `cov`, the
instrumented Python branches reached, and `ft`, its finer features), corpus
inputs found, peak memory, and findings. A finding is an input that escaped
the reader with anything but a DiffLodError, ran over 5 s, or grew the
process by more than 1 GiB; it is saved under --artifacts (default
out/fuzz/) with the log's last lines, and the exit status is 1.

Usage: python bench/fuzz.py [--seconds S] [--runs N] [--targets obj,glb] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "io" / "fuzz_harness.py"
REGRESSIONS = REPO / "tests" / "io" / "fuzz_regressions"
TARGETS = ("obj", "mtl", "gltf", "glb", "image")
_FINDING = re.compile(r"^(crash|timeout|oom|leak|slow-unit)-")


def _stat(log: str, key: str) -> float | None:
    m = re.search(rf"stat::{key}:\s*([0-9.]+)", log)
    return float(m.group(1)) if m else None


def run_target(name: str, seconds: int, runs: int | None, artifacts: Path) -> dict[str, object]:
    """Fuzz one target; returns its row (see the module docstring)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    with tempfile.TemporaryDirectory(prefix=f"difflod-fuzz-{name}-") as work:
        cmd = [sys.executable, str(HARNESS), name, f"-max_total_time={seconds}",
               "-print_final_stats=1", f"-artifact_prefix={artifacts}/{name}-",
               f"-work_dir={work}"]
        if runs is not None:
            cmd.append(f"-runs={runs}")
        if (REGRESSIONS / name).is_dir():
            cmd.append(str(REGRESSIONS / name))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, errors="replace",
                              cwd=REPO, env=_env(), timeout=seconds + 600)
        wall = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
    found = sorted(p.name for p in set(artifacts.iterdir()) - before if _FINDING.match(
        p.name.removeprefix(f"{name}-")))
    if proc.returncode != 0 or found:
        (artifacts / f"{name}.log").write_text(log[-20000:])
    execs = _stat(log, "number_of_executed_units")
    return {"target": name, "executions": int(execs) if execs is not None else None,
            "exec_per_s": _stat(log, "average_exec_per_sec"),
            "cov": int(cov[-1][0]) if cov else None, "ft": int(cov[-1][1]) if cov else None,
            "corpus": int(cov[-1][2]) if cov else None,
            "peak_rss_mb": _stat(log, "peak_rss_mb"), "seconds": round(wall, 1),
            "exit": proc.returncode, "findings": found}


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # atheris's report is printed just before the process ends
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--runs", type=int, default=None, help="at most this many per target")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--artifacts", default=str(REPO / "out" / "fuzz"),
                        help="folder for findings and their logs (default out/fuzz)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        parser.error(f"--targets: unknown {bad}; valid: {','.join(TARGETS)}")
    if args.seconds < 1 or (args.runs is not None and args.runs < 1):
        parser.error("--seconds and --runs must be positive")
    if shutil.which(sys.executable) is None:
        parser.error("no Python interpreter to run the harness")
    rows = [run_target(t, args.seconds, args.runs, Path(args.artifacts)) for t in targets]
    if args.json:
        print(json.dumps({"seconds": args.seconds, "runs": args.runs, "rows": rows}, indent=2))
    else:
        print(f"{'target':<7}{'execs':>10}{'exec/s':>8}{'cov':>6}{'ft':>7}{'corpus':>7}"
              f"{'rss MB':>8}{'wall s':>8}  findings")
        for r in rows:
            print(f"{r['target']:<7}{r['executions'] or 0:>10}{r['exec_per_s'] or 0:>8.0f}"
                  f"{r['cov'] or 0:>6}{r['ft'] or 0:>7}{r['corpus'] or 0:>7}"
                  f"{r['peak_rss_mb'] or 0:>8.0f}{r['seconds']:>8.0f}  "
                  f"{', '.join(r['findings']) or ('none' if r['exit'] == 0 else 'exit ' + str(r['exit']))}")
    return 1 if any(r["findings"] or r["exit"] != 0 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
