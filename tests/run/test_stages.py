"""StageLog: one line as each stage begins, its wall time as it ends; quiet keeps
the times and prints nothing."""

from __future__ import annotations

import io

import pytest

from difflod.run.stages import StageLog


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def test_lines_and_times() -> None:
    clock, out = Clock(), io.StringIO()
    log = StageLog(["base mesh", "train", "evaluate"], stream=out, clock=clock)
    log.begin("base mesh")
    clock.t += 12.25
    log.begin("train")
    clock.t += 3.0
    assert log.timings() == {"base_mesh_s": 12.25, "train_s": 3.0}   # the running one so far
    clock.t += 100.0
    log.begin("evaluate")
    clock.t += 7.5
    log.finish()
    assert out.getvalue().splitlines() == [
        "[1/3] base mesh…", "      base mesh 12.2 s", "[2/3] train…", "      train 103.0 s",
        "[3/3] evaluate…", "      evaluate 7.5 s"]
    assert log.timings() == {"base_mesh_s": 12.25, "train_s": 103.0, "evaluate_s": 7.5}


def test_quiet_keeps_times_and_prints_nothing() -> None:
    clock, out = Clock(), io.StringIO()
    log = StageLog(["a", "b"], quiet=True, stream=out, clock=clock)
    log.begin("a")
    clock.t += 2.0
    log.finish()
    assert out.getvalue() == "" and log.timings() == {"a_s": 2.0}


def test_unknown_stage_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown stage 'tain'"):
        StageLog(["train"]).begin("tain")
