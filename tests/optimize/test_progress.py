"""Progress output: the compile notice appears only when numba compiles, and the
rate and ETA are measured from the end of the warm-up step."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numba

from difflod.optimize.progress import (
    COMPILE_MESSAGE,
    TORCH_COMPILE_MESSAGE,
    Progress,
    compile_notice,
    warmup_notice,
)

NOTICE = COMPILE_MESSAGE.format(target="CPU")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(i: int) -> dict:
    return {"iteration": i, "loss": 0.5, "psnr": 20.0}


def test_notice_only_when_numba_compiles() -> None:
    @numba.njit(cache=False)
    def add_one(x: float) -> float:
        return x + 1.0

    out = io.StringIO()
    with compile_notice(out):
        add_one(1.0)   # compiles here
        add_one(2.0)   # the same signature: nothing to compile
    assert out.getvalue() == NOTICE + "\n"
    out = io.StringIO()
    with compile_notice(out):
        add_one(3.0)   # compiled in this process already
    assert out.getvalue() == ""
    with compile_notice(out, quiet=True):
        add_one(4)     # a new signature compiles, but quiet prints nothing
    assert out.getvalue() == ""


def test_notice_on_a_fresh_cache_and_not_on_a_warm_one(tmp_path: Path) -> None:
    (tmp_path / "kern.py").write_text(
        "import numba\n\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import kern\n"
              "from difflod.optimize.progress import compile_notice\n"
              "with compile_notice(sys.stdout):\n    kern.twice(3)\n")
    runs = [subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                           text=True, check=True, timeout=300) for _ in range(2)]
    assert runs[0].stdout == NOTICE + "\n"   # nothing cached yet: numba compiles
    assert runs[1].stdout == ""               # loaded from numba's disk cache


def test_log_lines_rate_and_eta_start_after_the_warm_up() -> None:
    clock, out = Clock(), io.StringIO()
    p = Progress(total=100, log_every=10, stream=out, clock=clock)
    p.start(0)
    clock.t += 32.0          # the first step compiles for 32 s
    p.update(_record(0))
    for i in range(1, 21):
        clock.t += 0.1       # then 10 it/s
        p.update(_record(i) if (i + 1) % 10 == 0 else {"iteration": i})
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "warm-up 32.0 s" in lines[0] and lines[0].startswith("iter      1/100")
    # after iteration 10: 9 steps in 0.9 s = 10 it/s, 90 left = 9 s (not 0.3 it/s)
    assert re.search(r"iter +10/100 .* 10\.00 it/s +eta +9\.0 s", lines[1]), lines[1]
    assert re.search(r"iter +20/100 .* 10\.00 it/s +eta +8\.0 s", lines[2]), lines[2]


def test_bar_rate_and_eta_start_after_the_warm_up() -> None:
    clock, out = Clock(), Terminal()
    p = Progress(total=100, log_every=10, stream=out, clock=clock)
    p.start(0)
    clock.t += 32.0
    p.update(_record(0))
    for i in range(1, 21):
        clock.t += 0.1
        p.update(_record(i) if (i + 1) % 10 == 0 else {"iteration": i})
    p.close()
    last = out.getvalue().split("\r")[-1]
    # tqdm: "21/100 [00:01<00:07, 10.00it/s, loss=..., psnr=...]"; with the warm-up
    # counted it would say 0.6 it/s and about 2 minutes left
    m = re.search(r"21/100 \[00:0\d<00:(\d\d), +([\d.]+)it/s", last)
    assert m, last
    # 79 left at 10 it/s: 7.9 s, which tqdm shows truncated
    assert float(m.group(2)) == 10.0 and int(m.group(1)) == 7
    assert "loss=0.5000" in last


def test_quiet_prints_nothing() -> None:
    clock, out = Clock(), Terminal()
    p = Progress(total=5, quiet=True, stream=out, clock=clock)
    p.start(0)
    for i in range(5):
        clock.t += 1.0
        p.update(_record(i))
    p.close()
    assert out.getvalue() == ""


def test_torch_compile_is_announced_before_the_first_step_and_only_then() -> None:
    clock, out = Clock(), io.StringIO()
    p = Progress(total=3, stream=out, clock=clock)
    p.start(0, torch_compile=True)
    assert out.getvalue().splitlines()[0] == TORCH_COMPILE_MESSAGE
    p.close()
    plain = io.StringIO()
    q = Progress(total=3, stream=plain, clock=clock)
    q.start(0)
    q.close()
    assert TORCH_COMPILE_MESSAGE not in plain.getvalue()
    quiet = io.StringIO()
    r = Progress(total=3, quiet=True, stream=quiet, clock=clock)
    r.start(0, torch_compile=True)
    assert quiet.getvalue() == ""


def test_warmup_notice_says_how_many_kernels_and_processes() -> None:
    out = io.StringIO()
    notice = warmup_notice(out)
    notice(27, 2)
    notice(3, 1)
    assert out.getvalue().splitlines() == [
        "compiling 27 CPU kernels in 2 processes (first run only; cached after)…",
        "compiling 3 CPU kernels in 1 process (first run only; cached after)…"]
