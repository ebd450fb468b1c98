"""Pulse plans: what a backend is asked to apply.

A plan is a list of groups; each group is one pulse shape (signed amplitude, width) with a
non-negative integer count per device. A positive amplitude is a SET (conductance up), a
negative one a RESET (conductance down). Plans are plain validated containers so that the hot
path (planning 20 000 devices per presentation) costs array operations only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator


class PulseShape(BaseModel):
    """One rectangular programming pulse: signed amplitude (V) and width (s)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    amplitude_v: float = Field(description="signed amplitude in volts; > 0 SET, < 0 RESET")
    width_s: float = Field(gt=0.0, description="pulse width in seconds")

    @field_validator("amplitude_v", "width_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        return value

    @field_validator("amplitude_v")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0.0:
            raise ValueError("a programming pulse needs a non-zero amplitude")
        return value

    @property
    def polarity(self) -> int:
        """+1 for SET, -1 for RESET."""
        return 1 if self.amplitude_v > 0 else -1


#: How the unselected lines of a passive array are biased while a device is pulsed.
#: "none": selected devices only (1T1R or a selector); "v2": V/2 scheme (cells sharing the row
#: or the column of a selected cell see V/2); "v3": V/3 scheme (every other cell sees +-V/3).
BiasScheme = Literal["none", "v2", "v3"]


@dataclass(frozen=True)
class PulseGroup:
    """One pulse shape and how many times each device of the array receives it.

    With `parallel=False` the pulses are delivered device by device (each pulse half-selects
    its row and column under V/2 biasing). With `parallel=True` the group is one or more
    row/column-parallel phases: every counted device is pulsed at once in each phase, so a
    device's half-select stress comes from its selected row or column only.
    """

    shape: PulseShape
    counts: NDArray[np.int64]
    parallel: bool = False

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts)
        if counts.ndim != 2:
            raise ValueError(
                f"pulse counts must be a 2-D array (rows, cols), got shape {counts.shape}"
            )
        if counts.dtype.kind not in "iu":
            if (
                counts.dtype.kind == "f"
                and np.all(np.isfinite(counts))
                and np.all(counts == np.round(counts))
            ):
                counts = counts.astype(np.int64)
            else:
                raise ValueError(f"pulse counts must be integers, got dtype {counts.dtype}")
        if counts.size and counts.min() < 0:
            idx = np.unravel_index(int(np.argmin(counts)), counts.shape)
            raise ValueError(
                f"pulse counts must be >= 0; device (row={idx[0]}, col={idx[1]}) has {counts[idx]}"
            )
        counts = counts.astype(np.int64, copy=False)
        counts.setflags(write=False)
        object.__setattr__(self, "counts", counts)

    @property
    def total(self) -> int:
        """Pulses in the group (computed once: the counts are read-only)."""
        cached = self.__dict__.get("_total")
        if cached is None:
            cached = int(self.counts.sum())
            object.__setattr__(self, "_total", cached)
        return int(cached)

    @property
    def max_count(self) -> int:
        """Most pulses any one device receives from this group (computed once)."""
        cached = self.__dict__.get("_max_count")
        if cached is None:
            cached = int(self.counts.max()) if self.counts.size else 0
            object.__setattr__(self, "_max_count", cached)
        return int(cached)


@dataclass(frozen=True)
class PulsePlan:
    """An ordered list of pulse groups for a `rows x cols` array, applied group by group."""

    rows: int
    cols: int
    groups: tuple[PulseGroup, ...] = field(default_factory=tuple)
    bias: BiasScheme = "none"

    def __post_init__(self) -> None:
        if self.rows <= 0 or self.cols <= 0:
            raise ValueError(f"plan shape must be positive, got ({self.rows}, {self.cols})")
        groups = tuple(self.groups)
        for k, group in enumerate(groups):
            if not isinstance(group, PulseGroup):
                raise TypeError(f"group {k} is {type(group).__name__}, not PulseGroup")
            if group.counts.shape != (self.rows, self.cols):
                raise ValueError(
                    f"group {k} counts have shape {group.counts.shape}, "
                    f"plan is ({self.rows}, {self.cols})"
                )
        if self.bias not in ("none", "v2", "v3"):
            raise ValueError(f"bias must be 'none', 'v2' or 'v3', got {self.bias!r}")
        object.__setattr__(self, "groups", groups)

    @classmethod
    def from_groups(
        cls, shape: tuple[int, int], groups: Sequence[PulseGroup], bias: BiasScheme = "none"
    ) -> PulsePlan:
        return cls(rows=shape[0], cols=shape[1], groups=tuple(groups), bias=bias)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    def __iter__(self) -> Iterator[PulseGroup]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def is_empty(self) -> bool:
        return all(group.total == 0 for group in self.groups)

    def counts_per_device(self) -> NDArray[np.int64]:
        """Total pulses each device receives from this plan, all groups together."""
        total = np.zeros((self.rows, self.cols), dtype=np.int64)
        for group in self.groups:
            total += group.counts
        return total

    def signed_counts(self) -> NDArray[np.int64]:
        """SET pulses minus RESET pulses per device."""
        total = np.zeros((self.rows, self.cols), dtype=np.int64)
        for group in self.groups:
            total += group.shape.polarity * group.counts
        return total

    @property
    def total_pulses(self) -> int:
        return sum(group.total for group in self.groups)

    def energy_estimate_j(self, conductance_s: NDArray[np.float64]) -> float:
        """Rough programming energy, sum of V^2 * G * t over pulses, at the given conductances."""
        g = np.asarray(conductance_s, dtype=float)
        if g.shape != self.shape:
            raise ValueError(f"conductance shape {g.shape} does not match plan {self.shape}")
        return float(
            sum(
                group.shape.amplitude_v**2 * group.shape.width_s * float((g * group.counts).sum())
                for group in self.groups
            )
        )

    def digest(self) -> str:
        """A stable content hash, used to journal a plan and recognise it on resume."""
        import hashlib

        h = hashlib.sha256(f"{self.rows}x{self.cols}:{self.bias}".encode())
        for group in self.groups:
            h.update(repr((group.shape.amplitude_v, group.shape.width_s, group.parallel)).encode())
            h.update(np.ascontiguousarray(group.counts).tobytes())
        return h.hexdigest()

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> PulsePlan:
        return cls(rows=shape[0], cols=shape[1], groups=())
