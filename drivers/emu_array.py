"""The simulated array behind an emulator, and the emulator's own log of what it applied.

The emulator stands for the physical array, which accepts whatever it is sent; the safety
limits belong to the driver side. So the array gets limits that never bind, and the
emulator records every applied batch independently of the driver's bookkeeping.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from protocols.backend import CrossbarBackend
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape

#: Limits that never bind: the array itself has no limits, the instrument's are enforced
#: by the emulator's grammar.
UNBOUNDED = SafetyLimits(
    max_set_v=1e6,
    max_reset_v=1e6,
    max_width_s=1e6,
    compliance_a=1e6,
    max_pulses_per_device_per_update=2**62,
    max_pulses_per_device_per_run=2**62,
    max_energy_per_update_j=1e300,
)


def make_array(rows: int, cols: int, *, preset: str = "ideal", seed: int = 0) -> CrossbarBackend:
    """A simulated crossbar for an emulator (any preset of the simulator)."""
    from sim_backend import SimulatedCrossbar

    array = SimulatedCrossbar(rows, cols, preset=preset, seed=seed)
    array.limits = UNBOUNDED
    return array


@dataclass(frozen=True)
class AppliedBatch:
    """One entry of an emulator's log: what it delivered to the array."""

    batch: int
    pulses: int
    digest: str


@dataclass
class StagedGroup:
    amplitude_v: float
    width_s: float
    parallel: bool
    counts: NDArray[np.int64]


def plan_of(rows: int, cols: int, groups: list[StagedGroup], bias: str) -> PulsePlan:
    return PulsePlan(
        rows=rows,
        cols=cols,
        groups=tuple(
            PulseGroup(
                PulseShape(amplitude_v=g.amplitude_v, width_s=g.width_s),
                g.counts.copy(),
                parallel=g.parallel,
            )
            for g in groups
        ),
        bias=bias,  # type: ignore[arg-type]
    )


class ArrayLog:
    """Thread-safe record of applied batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[AppliedBatch] = []

    def add(self, entry: AppliedBatch) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[AppliedBatch]:
        with self._lock:
            return list(self._entries)
