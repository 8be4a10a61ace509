"""The training steps' numbers, kept on the device and read back in one go.

A step leaves its numbers (loss, Laplacian, MSE, finite, covered pixels past
the recorded step's capacity) in a device tensor; the Trainer reads them back
every log_interval steps (no host sync in the steps between, which is what
lets a GPU run ahead, and a recorded step replay back to back). Reading them
fills each step's history record.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch

__all__ = ["PendingSteps", "ReadBack"]


@dataclass(frozen=True)
class ReadBack:
    """What one read-back found.

    Attributes:
        records: the history records filled, oldest first.
        covered: the most covered pixels (of one layer) of a step that had
            more than its renders' pixel capacity, which was skipped; 0 if none.
        overflowed: the iterations of those steps.
    """

    records: list[dict]
    covered: int
    overflowed: list[int]


class PendingSteps:
    """Steps whose numbers are still on the device: (record, numbers `[5]`,
    Laplacian weight, host milliseconds) each."""

    def __init__(self) -> None:
        self.items: list[tuple[dict, torch.Tensor, float, float]] = []

    def add(self, record: dict, numbers: torch.Tensor, lap_w: float, ms: float) -> None:
        self.items.append((record, numbers, lap_w, ms))

    def clear(self) -> None:
        self.items = []

    def read(self, capacity: int | None) -> ReadBack:
        """Read every pending step's numbers back and fill its record: "loss",
        "laplacian" (weighted), "psnr", "ms" (the host's time in the step plus an
        equal share of the wait for the device: a recorded step queues in
        microseconds and its device time would otherwise fall outside every
        record), "skipped" where the step was undone (NaN/Inf, warned once per
        step, or more covered pixels than `capacity`, the slots its renders had).
        """
        if not self.items:
            return ReadBack([], 0, [])
        pending, self.items = self.items, []
        t0 = time.perf_counter()
        values = torch.stack([n for _, n, _, _ in pending]).tolist()
        wait = (time.perf_counter() - t0) * 1000.0 / len(pending)
        most, overflowed = 0, []
        for (record, _, lap_w, ms), (loss_v, lap_v, mse, finite, over) in zip(pending, values):
            record.update(loss=loss_v, laplacian=lap_v * lap_w)
            if not finite or over > 0:
                record["skipped"] = True
            record.update(psnr=-10.0 * math.log10(max(mse, 1e-10)), ms=ms + wait)
            if not finite:
                warnings.warn(f"iteration {record['iteration']}: the loss or a gradient became "
                              f"NaN/Inf; skipped the step and restored the last good state",
                              RuntimeWarning, stacklevel=3)
            elif over > 0 and capacity is not None:
                most = max(most, capacity + int(over))
                overflowed.append(record["iteration"])
        return ReadBack([r for r, _, _, _ in pending], most, overflowed)
