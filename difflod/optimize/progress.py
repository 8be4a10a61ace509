"""Progress output of a training run: a bar on a terminal, log lines otherwise.

On a terminal, a tqdm bar shows iteration, loss, PSNR estimate, it/s and
ETA. When stderr is not a terminal (CI, batch jobs, a file), one plain line
every `log_every` iterations says the same. `quiet` silences both.

The first iteration is a warm-up: on a fresh install it compiles what was not
compiled ahead (numba; cached on disk after), so the rate and the ETA are
measured from its end, and the bar appears only then. Whether a compile
happens is not guessed from the cache folder: `compile_notice` listens to
numba's own "numba:compile" event, which numba raises only after its disk
cache missed, and prints one line the moment the first compile starts. The
CPU kernels a training step calls are compiled ahead, before the first step,
in parallel processes (render.backends.warm_up); `warmup_notice` announces
that.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["COMPILE_MESSAGE", "TORCH_COMPILE_MESSAGE", "WARMUP_MESSAGE", "Progress",
           "compile_notice", "warmup_message", "warmup_notice"]

COMPILE_MESSAGE = "compiling {target} kernels (first run only; cached after)…"
#: before a first run's CPU kernels are compiled ahead (render.backends.warm_up)
WARMUP_MESSAGE = "compiling {kernels} CPU kernels in {processes} (first run only; cached after)…"
#: before the first step of a run whose step goes through torch.compile
TORCH_COMPILE_MESSAGE = ("compiling the step's fused kernels (torch.compile, config key "
                         "'compile': minutes on a machine's first run; cached after)…")


@contextlib.contextmanager
def compile_notice(stream: TextIO | None = None, *, quiet: bool = False) -> Iterator[None]:
    """Within the block, print COMPILE_MESSAGE once when numba starts compiling.

    numba raises "numba:compile" for a kernel whose signature is neither
    compiled in this process nor found in its disk cache, so the line appears
    exactly when a compile is about to take time, and never on a cached run.
    """
    if quiet:
        yield
        return
    from numba.core import event

    out = stream if stream is not None else sys.stderr

    class _Notice(event.Listener):
        shown = False

        def on_start(self, ev: event.Event) -> None:
            if self.shown:
                return
            self.shown = True
            disp = (ev.data or {}).get("dispatcher")
            target = "GPU" if "cuda" in type(disp).__module__ else "CPU"
            print(COMPILE_MESSAGE.format(target=target), file=out, flush=True)

        def on_end(self, ev: event.Event) -> None:
            pass

    with event.install_listener("numba:compile", _Notice()):
        yield


def warmup_message(kernels: int, processes: int) -> str:
    """WARMUP_MESSAGE for `kernels` compiled in `processes` processes."""
    where = f"{processes} process{'es' if processes > 1 else ''}"
    return WARMUP_MESSAGE.format(kernels=kernels, processes=where)


def warmup_notice(stream: TextIO | None = None) -> Callable[[int, int], None]:
    """An `on_compile(kernels, processes)` for render.backends.warm_up that prints
    warmup_message to `stream` (stderr)."""
    def notice(kernels: int, processes: int) -> None:
        print(warmup_message(kernels, processes),
              file=stream if stream is not None else sys.stderr, flush=True)

    return notice


class Progress:
    """Training progress on `stream` (stderr by default).

    Args:
        total: the last iteration of the run.
        quiet: print nothing.
        log_every: iterations between plain log lines (not on a terminal).
        clock: seconds as a float (time.perf_counter; tests give their own).
    """

    def __init__(self, total: int, *, quiet: bool = False, log_every: int = 10,
                 stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.total = total
        self.quiet = quiet
        self.log_every = max(1, log_every)
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self._bar = None
        self._t0 = 0.0
        self._start_it = 0
        self._warm = False
        self._notice: contextlib.ExitStack | None = None

    def _tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def start(self, iteration: int, *, torch_compile: bool = False) -> None:
        """Begin at `iteration`; the next update is the warm-up step (with
        `torch_compile`, announced as compiling: TORCH_COMPILE_MESSAGE)."""
        self._t0 = self.clock()
        self._start_it = iteration
        self._warm = False
        if self.quiet:
            return
        if torch_compile:
            print(TORCH_COMPILE_MESSAGE, file=self.stream, flush=True)
        self._notice = contextlib.ExitStack()
        self._notice.enter_context(compile_notice(self.stream))

    def _open_bar(self, initial: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=self.total, initial=initial, file=self.stream, unit="it",
                         dynamic_ncols=True, leave=True)
        # tqdm's clock, replaced as tqdm's own tests do (cpu_timify)
        self._bar._time = self.clock
        self._bar.start_t = self._bar.last_print_t = self.clock()

    def update(self, record: dict) -> None:
        """Report one finished iteration: record holds "iteration", and "loss" and
        "psnr" where they were read back (the warm-up, every log_every, the end)."""
        if self.quiet:
            return
        it = int(record["iteration"]) + 1
        warm_up = not self._warm
        if warm_up:  # the warm-up step ended: rates count from here
            self._warm = True
            took = self.clock() - self._t0
            self._t0, self._start_it = self.clock(), it
            if self._tty():
                self._open_bar(it)
        if self._bar is not None:
            if "loss" in record:  # read back (every log_every steps)
                self._bar.set_postfix(loss=f"{record['loss']:.4f}",
                                      psnr=f"{record['psnr']:.2f}dB", refresh=False)
            if warm_up:
                self._bar.refresh()
            else:
                self._bar.update(1)
            return
        if "loss" not in record or (not warm_up and it % self.log_every and it != self.total):
            return
        if warm_up:
            speed = f"warm-up {took:.1f} s; rate follows"
        else:
            rate = (it - self._start_it) / max(self.clock() - self._t0, 1e-9)
            speed = f"{rate:6.2f} it/s  eta {(self.total - it) / rate:7.1f} s"
        print(f"iter {it:6d}/{self.total}  loss {record['loss']:.5f}  "
              f"psnr {record['psnr']:6.2f} dB  {speed}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._notice is not None:
            self._notice.close()
            self._notice = None
