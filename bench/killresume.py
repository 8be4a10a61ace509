"""Kill and resume: SIGKILL `difflod train` / `difflod simplify` at random
moments, check what they left, `--resume`, and compare with an uninterrupted run.

For each command, one uninterrupted run (a real process) gives the reference
files, N of them. Each trial then starts the same command in a fresh folder
and SIGKILLs it at a random moment of its own progress (seeded), whatever
the machine's speed: once k files (k uniform in 0..N, temporary ones
included) have appeared in the folder, after a further random 0-500 ms (k = 0:
within the first 0-3 s, while Python starts). It then checks every file left
there: JSON parses, PNG/WebP decode, GLB/OBJ load, a
checkpoint unpickles; leftover temporary files of io.atomic (hidden, named
.NAME.XXXXXXXX.tmp.SUFFIX) are counted apart, since only the next run can
delete them. `--resume` (a real process too) must then end with no temporary
file, no checkpoint, and the reference's bytes in every file that holds no
timing (history.json is compared without its "ms" column; metrics.json and
report/ hold timings and are only checked complete). On the CPU backend the
runs are deterministic, so the tolerance is zero.

    python bench/killresume.py [--trials 20] [--seed 0] [--commands train,simplify]
                               [--keep DIR] [--json]

The table has one row per trial: command, the kill's moment (after k files
+ ms) and time, what the folder held
(no folder, no checkpoint, checkpoint at iteration k, finished), files
checked, incomplete files, temporaries left, resume seconds, and whether the
result is identical. The last line counts trials passed out of trials run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from difflod.run.lock import LOCK_NAME
from difflod.run.output_check import check_outputs

SETTINGS = {"iter": 8, "batch": 2, "train_res": 32, "texture_res": [32, 32], "save_interval": 2,
            "eval_views": 2, "eval_res": 32, "backend": "cpu", "device": "cpu",
            "log_interval": 100}
TRAIN = {**SETTINGS, "ref_mesh": "asset:sphere?triangles=1500&texture_res=32",
         "base_mesh": "asset:sphere?triangles=200&texture_res=32", "random_textures": True,
         "out_dir": "run"}
SIMPLIFY_REF, SIMPLIFY_BUDGET = "asset:spiky?triangles=1500&texture_res=32", 200
TIMED = {"history.json", "metrics.json", "report/report.html", "report/curves.png"}


def command(kind: str, folder: Path, cfg: Path, resume: bool) -> list[str]:
    base = [sys.executable, "-m", "difflod"]
    if kind == "train":
        cmd = base + ["train", "--config", str(cfg), "--out-root", str(folder)]
    else:
        cmd = base + ["simplify", SIMPLIFY_REF, "--triangles", str(SIMPLIFY_BUDGET), "-o",
                      str(folder / "run"), "--config", str(cfg)]
    return cmd + (["--resume"] if resume else []) + ["--quiet"]


def inspect(run: Path) -> dict:
    """What a killed run left in `run`."""
    if not run.is_dir():
        return {"state": "no folder", "files": 0, "incomplete": [], "temps": 0}
    outputs, bad, temp_files = check_outputs(run)
    files, temps = len(outputs), len(temp_files)
    ckpt = run / "checkpoint.pt"
    if ckpt.is_file() and not any(b.startswith("checkpoint.pt") for b in bad):
        state = f"checkpoint @{torch.load(ckpt, weights_only=False)['iteration']}"
    elif (run / "metrics.json").is_file() and not ckpt.exists():
        state = "finished"
    else:
        state = "no checkpoint"
    return {"state": state, "files": files, "incomplete": bad, "temps": temps}


def differences(a: Path, b: Path) -> list[str]:
    def files(d: Path) -> set[str]:
        return {str(p.relative_to(d)) for p in d.rglob("*")
                if p.is_file() and p.name != LOCK_NAME}

    def config(d: Path) -> dict:
        return {k: v for k, v in json.loads((d / "config.json").read_text()).items()
                if k != "out_dir"}

    def history(d: Path) -> list[dict]:
        return [{k: v for k, v in h.items() if k != "ms"}
                for h in json.loads((d / "history.json").read_text())]

    names = files(a) | files(b)
    diff = sorted(n for n in names - TIMED - {"config.json"}
                  if not ((a / n).is_file() and (b / n).is_file()
                          and (a / n).read_bytes() == (b / n).read_bytes()))
    for name, read in (("config.json", config), ("history.json", history)):
        try:
            if read(a) != read(b):
                diff.append(name)
        except (OSError, ValueError):
            diff.append(name)
    return diff


def run_to_end(cmd: list[str]) -> float:
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return time.monotonic() - t0


def count_files(run: Path) -> int:
    """Files in `run` (temporary ones included, the lock file not)."""
    try:
        return sum(1 for p in run.rglob("*") if p.name != LOCK_NAME and p.is_file())
    except OSError:  # a file renamed or removed during the walk
        return -1


def kill_at(proc: subprocess.Popen, run: Path, files: int, jitter: float) -> bool:
    """SIGKILL `proc` `jitter` seconds after `files` files exist in `run` (files = 0:
    `jitter` seconds after it started). False when it ended first."""
    while files > 0 and proc.poll() is None and count_files(run) < files:
        time.sleep(0.005)
    try:
        proc.wait(timeout=jitter)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def trial(kind: str, root: Path, cfg: Path, moment: tuple[int, float],
          reference: Path) -> dict:
    folder = root
    run = folder / "run"
    t0 = time.monotonic()
    proc = subprocess.Popen(command(kind, folder, cfg, False), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed = kill_at(proc, run, *moment)
    delay = time.monotonic() - t0
    found = inspect(run)
    seconds = run_to_end(command(kind, folder, cfg, True))
    after = inspect(run)
    diff = differences(reference, run)
    ok = (not found["incomplete"] and not after["incomplete"] and after["temps"] == 0
          and not (run / "checkpoint.pt").exists() and not diff)
    return {"command": kind, "after_files": moment[0], "jitter_ms": round(moment[1] * 1000),
            "kill_s": round(delay, 2), "killed": killed,
            "found": found["state"], "files": found["files"],
            "incomplete": found["incomplete"], "temps_left": found["temps"],
            "resume_s": round(seconds, 1), "differs": diff, "pass": ok}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--commands", default="train,simplify")
    p.add_argument("--keep", type=Path, default=None, help="work here and keep the folders")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    kinds = args.commands.split(",")
    rng = random.Random(args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="killresume."))
    work.mkdir(parents=True, exist_ok=True)
    refs, cfgs, walls, counts = {}, {}, {}, {}
    for kind in kinds:
        cfg = work / f"{kind}.json"
        cfg.write_text(json.dumps(TRAIN if kind == "train" else SETTINGS))
        cfgs[kind] = cfg
        walls[kind] = run_to_end(command(kind, work / f"ref_{kind}", cfg, False))
        refs[kind] = work / f"ref_{kind}" / "run"
        counts[kind] = count_files(refs[kind])
    rows = []
    for i in range(args.trials):
        kind = kinds[i % len(kinds)]
        k = rng.randint(0, counts[kind])
        moment = (k, rng.uniform(0.0, 3.0) if k == 0 else rng.uniform(0.0, 0.5))
        rows.append(trial(kind, work / f"trial_{i:03d}", cfgs[kind], moment, refs[kind]))
        if not args.json:
            r = rows[-1]
            print(f"{i:3d} {r['command']:8s} after {r['after_files']:2d} files "
                  f"+{r['jitter_ms']:4d} ms = {r['kill_s']:6.2f}s "
                  f"{'' if r['killed'] else '(ended first)':13s} found {r['found']:15s} "
                  f"files {r['files']:3d} incomplete {len(r['incomplete'])} temps "
                  f"{r['temps_left']} resume {r['resume_s']:5.1f}s "
                  f"{'identical' if not r['differs'] else 'DIFFERS ' + ','.join(r['differs'])}"
                  f" {'pass' if r['pass'] else 'FAIL'}", flush=True)
    passed = sum(r["pass"] for r in rows)
    summary = {"machine": f"{os.cpu_count()} CPU cores", "uninterrupted_s": walls,
               "trials": len(rows), "passed": passed, "rows": rows}
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    else:
        print("uninterrupted run: " + ", ".join(f"{k} {v:.1f}s" for k, v in walls.items()))
        print(f"{passed} of {len(rows)} trials passed")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
