"""The stage lines of an orchestrator: which stage runs, and how long each took.

    [1/4] base mesh…
          base mesh 12.3 s
    [2/4] train…
    ...

`StageLog.begin(name)` ends the running stage (printing its wall time) and
starts the next; `finish()` ends the last. Outside the train stage (whose
progress bar has its own) numba's first compile of a stage is announced by
optimize.progress.compile_notice. Lines go to stderr, as the progress bar's;
`quiet` prints nothing but still keeps the times (`seconds`, `timings()`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from difflod.optimize.progress import compile_notice

__all__ = ["StageLog"]


class StageLog:
    """Times and announces the stages `names` of one run, in the order begun.

    Args:
        names: every stage the run may begin (for the "[k/n]" count).
        quiet: print nothing.
        notice_except: stages that announce compiles themselves (the train
            stage's progress bar).
        stream: where the lines go (stderr).
        clock: seconds as a float.
    """

    def __init__(self, names: Sequence[str], *, quiet: bool = False,
                 notice_except: Sequence[str] = ("train",), stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.names = list(names)
        self.quiet = quiet
        self.notice_except = set(notice_except)
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self._current: str | None = None
        self._t0 = 0.0
        self._notice = contextlib.ExitStack()

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def begin(self, name: str) -> None:
        """End the running stage, start `name`."""
        if name not in self.names:
            raise ValueError(f"StageLog: unknown stage {name!r}; expected one of {self.names}")
        self.finish()
        self._current, self._t0 = name, self.clock()
        self._print(f"[{self.names.index(name) + 1}/{len(self.names)}] {name}…")
        if name not in self.notice_except:
            self._notice.enter_context(compile_notice(self.stream, quiet=self.quiet))

    def finish(self) -> None:
        """End the running stage, if any, and print its wall time."""
        self._notice.close()
        if self._current is None:
            return
        took = self.clock() - self._t0
        self.seconds[self._current] = self.seconds.get(self._current, 0.0) + took
        self._print(f"      {self._current} {took:.1f} s")
        self._current = None

    def timings(self) -> dict[str, float]:
        """{"<stage>_s": seconds} of the stages so far, the running one up to now
        (spaces as "_")."""
        seconds = dict(self.seconds)
        if self._current is not None:
            seconds[self._current] = seconds.get(self._current, 0.0) + self.clock() - self._t0
        return {f"{k.replace(' ', '_')}_s": v for k, v in seconds.items()}
