"""Benchmark: coverage-guided fuzzing of every model reader (atheris / libFuzzer).

Runs the targets of tests/io/fuzz_harness.py (obj, mtl, gltf, glb, image),
seeded by difflod's own writers and tests/io/fuzz_regressions/, for at most
--seconds and at most --runs executions per target, and reports per target:
fuzzing processes, executions (summed over them), executions per second (their
summed wall-clock rates), executions per CPU second (the fuzzing's own CPU
time, the harness's setup subtracted: what one free core does, even on a
machine busy with other work), coverage (libFuzzer's `cov`, the instrumented Python branches
reached, and `ft`, its finer features; the best process's), inputs in the
shared corpus at the end, peak memory of one process, and findings. A finding
is an input that escaped the reader with anything but a DiffLodError, ran over
5 s, or grew its process by more than 1 GiB; it is saved under --artifacts
(default out/fuzz/) as `<target>-crash-<sha1>` (timeout-, oom-, ...) with the
logs' last lines in `<target>.log`, and the exit status is 1.

--jobs N runs N fuzzing processes at once. With N >= the number of targets,
all targets run together, each with at least one process and the rest given
where an execution costs most (COST, measured), so that they finish together:
e.g. `--jobs 20` on a 16-core machine (a few more processes than cores keep
every core busy as the cheaper targets finish first). With fewer, the targets run one after
another, N processes each. A target's processes are independent libFuzzer
runs with distinct -seed values and their own folders; they share one output
corpus folder, which libFuzzer rereads each second, so an input one finds is
mutated by all. --runs is the total per target, split between its processes.
(libFuzzer's own -fork and -jobs start `argv[0]` again, here the harness's .py
file, which the shell refuses: tried, "Permission denied"; and -jobs counts
-runs per job. Hence these subprocesses.)

Usage: python bench/fuzz.py [--seconds S] [--runs N] [--jobs N] [--targets obj,glb]
                            [--seed K] [--artifacts DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "io" / "fuzz_harness.py"
REGRESSIONS = REPO / "tests" / "io" / "fuzz_regressions"
TARGETS = ("obj", "mtl", "gltf", "glb", "image")
# relative time of one execution under atheris: 1 / executions per CPU second,
# measured with all five at once on a shared 2-core CPU (obj 646, mtl 1793,
# gltf 2772, glb 1268, image 3370); only used to share --jobs between targets
COST = {"obj": 1.0, "mtl": 0.36, "gltf": 0.23, "glb": 0.51, "image": 0.19}
_FINDING = re.compile(r"^(crash|timeout|oom|leak|slow-unit)-")


def _stat(log: str, key: str) -> float | None:
    m = re.search(rf"stat::{key}:\s*([0-9.]+)", log)
    return float(m.group(1)) if m else None


def share(targets: list[str], jobs: int) -> list[dict[str, int]]:
    """Waves of concurrent processes: [{target: processes}], run one after another."""
    if jobs < len(targets):
        return [{t: jobs} for t in targets]
    procs = dict.fromkeys(targets, 1)
    for _ in range(jobs - len(targets)):  # each next process where the most work is left
        worst = max(targets, key=lambda t: COST[t] / procs[t])
        procs[worst] += 1
    return [procs]


def _split(runs: int | None, k: int) -> list[int | None]:
    if runs is None:
        return [None] * k
    return [runs // k + (1 if i < runs % k else 0) for i in range(k)]


def run_wave(wave: dict[str, int], seconds: int, runs: int | None, artifacts: Path,
             seed: int) -> list[dict[str, object]]:
    """Fuzz the targets of `wave` at once, each with its processes; their rows."""
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    ram = _ram_folder()
    with tempfile.TemporaryDirectory(prefix="difflod-fuzz-", dir=ram) as tmp:
        procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        t0 = time.perf_counter()
        for ti, (name, k) in enumerate(wave.items()):
            shared = Path(tmp) / name / "found"
            for i, n in enumerate(_split(runs, k)):
                if n == 0:
                    continue
                cmd = [sys.executable, str(HARNESS), name, f"-max_total_time={seconds}",
                       "-print_final_stats=1", f"-artifact_prefix={artifacts}/{name}-",
                       f"-seed={seed + 100 * ti + i}", f"-work_dir={tmp}/{name}/{i}",
                       f"-corpus_out={shared}"]
                if n is not None:
                    cmd.append(f"-runs={n}")
                if (REGRESSIONS / name).is_dir():
                    cmd.append(str(REGRESSIONS / name))
                log = Path(tmp) / f"{name}-{i}.log"
                with log.open("wb") as out:
                    procs.append((name, log, subprocess.Popen(
                        cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=_env())))
        try:
            ends, cpu = _wait(procs, t0, seconds + 600)
        finally:  # stopped early (Ctrl-C, SIGTERM): no fuzzer outlives the benchmark
            for _, _, p in procs:
                if p.returncode is None:
                    p.kill()
        rows = []
        for name in wave:
            mine = [(j, log, p) for j, (n, log, p) in enumerate(procs) if n == name]
            logs = [log.read_text(errors="replace") for _, log, _ in mine]
            corpus = len(list((Path(tmp) / name / "found").glob("*")))
            rows.append(_row(name, logs, [p.returncode for _, _, p in mine],
                             max(ends[j] for j, _, _ in mine), [cpu[j] for j, _, _ in mine],
                             corpus, artifacts, before))
    return rows


def _wait(procs: list[tuple[str, Path, subprocess.Popen[bytes]]], t0: float,
          limit: float) -> tuple[list[float], list[float]]:
    """Reap every process (killed past `limit` seconds); (wall end, CPU seconds) of each.

    os.wait4 rather than Popen.wait: it gives each process's own CPU time, the
    rate's measure on a machine shared with other work (wall time is not).
    """
    ends, cpu = [0.0] * len(procs), [0.0] * len(procs)
    left = set(range(len(procs)))
    while left:
        for j in sorted(left):
            p = procs[j][2]
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid == 0:
                if time.perf_counter() - t0 > limit:
                    p.kill()
                continue
            p.returncode = os.waitstatus_to_exitcode(status)
            ends[j] = time.perf_counter() - t0
            cpu[j] = usage.ru_utime + usage.ru_stime
            left.discard(j)
        time.sleep(0.1)
    return ends, cpu


def _row(name: str, logs: list[str], codes: list[int], wall: float, cpu: list[float],
         corpus: int, artifacts: Path, before: set[Path]) -> dict[str, object]:
    found = sorted(p.name for p in set(artifacts.iterdir()) - before
                   if p.name.startswith(f"{name}-")
                   and _FINDING.match(p.name.removeprefix(f"{name}-")))
    failed = [i for i, c in enumerate(codes) if c != 0]
    if failed or found:
        (artifacts / f"{name}.log").write_text("".join(
            f"==== process {i} (exit {codes[i]}) ====\n{logs[i][-20000:]}\n"
            for i in (failed or range(len(logs)))))
    cov = [re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log) for log in logs]
    execs = [_stat(log, "number_of_executed_units") for log in logs]
    rates = [_stat(log, "average_exec_per_sec") for log in logs]
    rss = [_stat(log, "peak_rss_mb") for log in logs]
    setup = [float(m.group(1)) if (m := re.search(r"setup_cpu_s: ([0-9.]+)", log)) else 0.0
             for log in logs]
    fuzz_cpu = sum(c - s for c, s in zip(cpu, setup))
    return {"target": name, "processes": len(logs),
            "executions": int(sum(e or 0 for e in execs)),
            "exec_per_s": sum(r or 0 for r in rates),
            "exec_per_cpu_s": round(sum(e or 0 for e in execs) / fuzz_cpu, 1) if fuzz_cpu > 0
            else None, "cpu_s": round(sum(cpu), 1),
            "cov": max((int(c[-1][0]) for c in cov if c), default=None),
            "ft": max((int(c[-1][1]) for c in cov if c), default=None),
            "corpus": corpus, "peak_rss_mb": max((r for r in rss if r), default=None),
            "seconds": round(wall, 1), "exit": max(codes, key=abs), "findings": found}


def _ram_folder() -> str | None:
    """/dev/shm when it is writable and roomy (a container's may hold only 64 MB;
    the corpora grow to tens of MB); else None, the system's temporary folder."""
    shm = Path("/dev/shm")
    try:
        roomy = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2**30
    except OSError:
        return None
    return str(shm) if roomy else None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # atheris's report is printed just before the process ends
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def table(rows: list[dict[str, object]]) -> str:
    lines = [(f"{'target':<7}{'procs':>6}{'execs':>10}{'exec/s':>8}{'/cpu-s':>8}{'cov':>6}{'ft':>7}"
              f"{'corpus':>7}{'rss MB':>8}{'wall s':>8}  findings")]
    for r in rows:
        status = "none" if r["exit"] == 0 else f"exit {r['exit']}"
        lines.append(f"{r['target']:<7}{r['processes']:>6}{r['executions']:>10}"
                     f"{r['exec_per_s']:>8.0f}{r['exec_per_cpu_s'] or 0:>8.0f}"
                     f"{r['cov'] or 0:>6}{r['ft'] or 0:>7}"
                     f"{r['corpus']:>7}{r['peak_rss_mb'] or 0:>8.0f}{r['seconds']:>8.0f}  "
                     f"{', '.join(r['findings']) or status}")  # type: ignore[arg-type]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60,
                        help="at most this long per target (default 60)")
    parser.add_argument("--runs", type=int, default=None,
                        help="at most this many executions per target, over all its processes")
    parser.add_argument("--jobs", type=int, default=1,
                        help="fuzzing processes at once (default 1; see the module docstring)")
    parser.add_argument("--seed", type=int, default=1,
                        help="libFuzzer -seed of the first process; the others count up")
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
    if args.seconds < 1 or args.jobs < 1 or (args.runs is not None and args.runs < 1):
        parser.error("--seconds, --jobs and --runs must be positive")
    if args.seed < 1:
        parser.error("--seed must be positive (libFuzzer takes 0 as 'pick one')")
    if shutil.which(sys.executable) is None:
        parser.error("no Python interpreter to run the harness")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: run the finally
    rows = [row for wave in share(targets, args.jobs)
            for row in run_wave(wave, args.seconds, args.runs, Path(args.artifacts), args.seed)]
    if args.json:
        print(json.dumps({"seconds": args.seconds, "runs": args.runs, "jobs": args.jobs,
                          "cpus": os.cpu_count(), "rows": rows}, indent=2))
    else:
        print(table(rows))
    return 1 if any(r["findings"] or r["exit"] != 0 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
