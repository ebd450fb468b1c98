"""Stuck-at faults: devices pinned at G_min or G_max whatever they are sent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim_backend.config import Faults


@dataclass(frozen=True)
class StuckDevices:
    """Flat indices of stuck devices and the normalised state each is pinned at (0 or 1)."""

    index: NDArray[np.intp]
    value: NDArray[np.float32]

    @property
    def count(self) -> int:
        return int(self.index.size)

    def pin(self, x: NDArray[np.float32]) -> None:
        """Force the stuck devices back to their value (O(number of stuck devices))."""
        if self.index.size:
            x[self.index] = self.value

    def mask(self, n: int) -> NDArray[np.bool_]:
        out = np.zeros(n, dtype=bool)
        out[self.index] = True
        return out


def draw_stuck(cfg: Faults, n: int, rng: np.random.Generator) -> StuckDevices:
    """Each device is independently stuck at G_min with one rate and at G_max with another."""
    u = rng.random(n)
    low = u < cfg.stuck_min_rate
    high = (u >= cfg.stuck_min_rate) & (u < cfg.stuck_min_rate + cfg.stuck_max_rate)
    index = np.flatnonzero(low | high).astype(np.intp)
    value = high[index].astype(np.float32)
    return StuckDevices(index=index, value=value)
