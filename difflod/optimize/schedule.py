"""Learning-rate schedule and the Laplacian weight schedule (nvdiffmodeling's).

- learning rate factor at iteration `it`: 10^(-decay * it) (decay 0.0002 by
  default: x0.1 after 5000 iterations; `lr_decay: null`, simplify's default:
  x AUTO_FINAL_FACTOR at the last iteration, whatever their number);
- Laplacian weight: `laplacian_factor` when set, else the automatic weight
  0.25 * 0.1 / (first Laplacian loss), "assuming an image RMSE near 0.1";
  in both cases it decays towards 2% of its first value by 10^(-1e-6 * it).
  The relative Laplacian (of the moves from the start) is 0 at the start, so
  its automatic weight takes the start's own absolute Laplacian instead (the
  Trainer passes it as `scale`): a move as rough as the start mesh itself costs what the
  absolute Laplacian would. Dividing by the relative one's first value (0,
  taken as 1e-12) gave 2.5e10, which froze the positions: every vertex moved
  under 0.0005 of the unit frame in 200 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AUTO_FINAL_FACTOR", "LaplacianWeight", "lr_decay_rate", "lr_factor"]


#: where `lr_decay: null` brings the learning rate by the last iteration
AUTO_FINAL_FACTOR = 0.1


def lr_decay_rate(decay: float | None, iterations: int) -> float:
    """The per-iteration exponent of `lr_factor`: `decay` itself, or for None the
    one that reaches AUTO_FINAL_FACTOR at iteration `iterations`."""
    if decay is not None:
        return decay
    return -math.log10(AUTO_FINAL_FACTOR) / max(iterations, 1)


def lr_factor(it: int, decay: float = 0.0002) -> float:
    """Multiplier of the base learning rate at iteration `it` (never negative)."""
    return max(0.0, 10.0 ** (-it * decay))


@dataclass
class LaplacianWeight:
    """The Laplacian regularizer's weight over iterations.

    Call `update(it, lap_loss)` once per iteration, in order; the first call
    fixes the starting weight. Read `.value`. `state()` / `from_state` round-trip it through checkpoints.
    `scale`: what the automatic weight divides by instead of the first
    Laplacian loss (the start's absolute Laplacian, for the relative one);
    only the first update reads it, so checkpoints need not carry it.
    """

    factor: float | None
    value: float = 0.0
    minimum: float = 0.0
    scale: float | None = None

    def needs_loss(self) -> bool:
        """Whether the next update reads its `lap_loss` (the first automatic one
        without a `scale`); the others may be given anything."""
        return self.minimum == 0.0 and self.factor is None and self.scale is None

    def update(self, it: int, lap_loss: float) -> float:
        if self.minimum == 0.0:
            if self.factor is not None:
                self.value = float(self.factor)
            else:
                first = self.scale if self.scale is not None else float(lap_loss)
                self.value = 0.25 * 0.1 / max(first, 1e-12)
            self.minimum = self.value * 0.02
        else:
            self.value = (self.value - self.minimum) * 10.0 ** (-it * 1e-6) + self.minimum
        return self.value

    def state(self) -> dict[str, float | None]:
        return {"factor": self.factor, "value": self.value, "minimum": self.minimum}

    @classmethod
    def from_state(cls, s: dict) -> LaplacianWeight:
        return cls(factor=s["factor"], value=float(s["value"]), minimum=float(s["minimum"]))
