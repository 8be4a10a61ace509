"""Progress output of a training run: a bar on a terminal, log lines otherwise.

On a terminal, a tqdm bar shows iteration, loss, PSNR estimate, it/s and
ETA. When stderr is not a terminal (CI, batch jobs, a file), one plain line
every `log_every` iterations says the same. `quiet` silences both.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, *, quiet: bool = False, log_every: int = 10,
                 stream=None) -> None:
        self.total = total
        self.quiet = quiet
        self.log_every = max(1, log_every)
        self.stream = stream if stream is not None else sys.stderr
        self._bar = None
        self._t0 = 0.0
        self._start_it = 0

    def start(self, iteration: int) -> None:
        self._t0 = time.perf_counter()
        self._start_it = iteration
        if self.quiet:
            return
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=iteration, file=self.stream,
                             unit="it", dynamic_ncols=True, leave=True)

    def update(self, record: dict) -> None:
        if self.quiet:
            return
        it = int(record["iteration"]) + 1
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['psnr']:.2f}dB",
                                  refresh=False)
            self._bar.update(1)
            return
        if it % self.log_every and it != self.total:
            return
        elapsed = time.perf_counter() - self._t0
        done = it - self._start_it
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - it) / rate if rate > 0 else 0.0
        print(f"iter {it:6d}/{self.total}  loss {record['loss']:.5f}  "
              f"psnr {record['psnr']:6.2f} dB  {rate:6.2f} it/s  eta {eta:7.1f} s",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
