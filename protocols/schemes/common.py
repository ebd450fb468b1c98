"""Shared pieces of the programming schemes: input checks, rounding, groups, the final check.

Every scheme ends in `finish`, which runs `check_plan` on the complete plan; a violation
raises and no plan (not even a part of one) leaves this package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from protocols.errors import InputError
from protocols.limits import SafetyLimits, check_plan
from protocols.plan import BiasScheme, PulseGroup, PulsePlan, PulseShape
from protocols.response import DeviceResponse
from protocols.spec import PulsePair

Array = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class PlannedUpdate:
    """A checked plan and what the mean device model expects it to do.

    `requested_counts` is the signed real-valued pulse count the scheme aimed for before
    rounding and capping; `clipped` marks devices whose request was cut by a cap;
    `approximation_error` is the relative Frobenius error of a low-rank approximation
    (outer-product scheme; 0 otherwise).
    """

    plan: PulsePlan
    expected_delta_g: Array
    requested_counts: Array
    clipped: NDArray[np.bool_]
    approximation_error: float = 0.0


@dataclass(frozen=True)
class UpdateRequest:
    """What an open-loop scheme plans from: one type, so the schemes share one signature.

    `delta_g` and `g` are checked (rows, cols) grids in S; `rng` is needed by stochastic
    rounding; `run_counts` (pulses already delivered in this run) enables the run budget.
    """

    delta_g: Array
    g: Array
    response: DeviceResponse
    pulses: PulsePair
    limits: SafetyLimits
    rng: np.random.Generator | None = None
    run_counts: IntArray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.delta_g.shape
        return rows, cols

    def step(self) -> Array:
        """Expected |dG| of one pulse toward each device's request."""
        return signed_step(self.response, self.g, self.delta_g)

    def counts_per_step(self, step: Array | None = None) -> Array:
        """Signed real-valued pulse counts dG / step (0 where a device cannot move)."""
        st = self.step() if step is None else step
        return np.divide(self.delta_g, st, out=np.zeros_like(self.delta_g), where=st > 0)

    def finish(self, plan: PulsePlan) -> Array:
        """`finish` for this request: check the plan, return the expected conductances."""
        return finish(plan, self.g, self.response, self.limits, self.run_counts)


def as_grid(name: str, value: ArrayLike, shape: tuple[int, int] | None = None) -> Array:
    """A finite 2-D float array, or an InputError naming the argument and the problem."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D (rows, cols) array, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty")
    if shape is not None and arr.shape != shape:
        raise InputError(f"{name} has shape {arr.shape}, expected {shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{name} at device (row={r}, col={c}) is {arr[r, c]!r}; must be finite")
    return arr


def stochastic_round(x: Array, rng: np.random.Generator) -> IntArray:
    """floor(x) + Bernoulli(x - floor(x)) for x >= 0: unbiased, E[result] = x."""
    lo = np.floor(x)
    up = rng.random(x.shape) < (x - lo)
    return (lo + up).astype(np.int64)


def per_update_cap(scheme_cap: int, limits: SafetyLimits) -> int:
    return int(min(scheme_cap, limits.max_pulses_per_device_per_update))


def signed_step(response: DeviceResponse, g: Array, direction: Array) -> Array:
    """Expected |dG| of one pulse in the direction of `direction` (>= 0: SET, < 0: RESET).

    One pass over the devices: each is evaluated on the curve of its own polarity only.
    """
    g_arr = np.asarray(g, dtype=np.float64)
    one = np.where(direction >= 0, 1.0, -1.0)
    out = response.after_pulses(g_arr, one)
    out -= g_arr
    return np.abs(out, out=out)


def signed_groups(
    signed: IntArray, pulses: PulsePair, *, parallel: bool = False
) -> list[PulseGroup]:
    """A SET group for the positive counts, then a RESET group for the negative ones."""
    groups: list[PulseGroup] = []
    up = np.where(signed > 0, signed, 0)
    down = np.where(signed < 0, -signed, 0)
    if up.any():
        groups.append(PulseGroup(pulses.shape(+1), up, parallel=parallel))
    if down.any():
        groups.append(PulseGroup(pulses.shape(-1), down, parallel=parallel))
    return groups


def expected_after(plan: PulsePlan, g: Array, response: DeviceResponse) -> Array:
    """Mean-model conductance after applying the groups of `plan` in order."""
    out = np.array(g, dtype=np.float64, copy=True)
    for group in plan.groups:
        if group.total:
            out = response.after_pulses(out, group.shape.polarity * group.counts)
    return out


def finish(
    plan: PulsePlan,
    g: Array,
    response: DeviceResponse,
    limits: SafetyLimits,
    run_counts: ArrayLike | None,
) -> Array:
    """Check `plan` against `limits` at the highest conductance it is expected to reach.

    Returns the expected conductance after the plan (`expected_after`, computed in the same
    pass as the peak). Raises `LimitViolation` otherwise.
    """
    peak = np.array(g, dtype=np.float64, copy=True)
    after = peak.copy()
    for group in plan.groups:
        if group.total:
            after = response.after_pulses(after, group.shape.polarity * group.counts)
            np.maximum(peak, after, out=peak)
    counts = None if run_counts is None else np.asarray(run_counts, dtype=np.int64)
    check_plan(plan, limits, conductance_s=peak, run_counts=counts)
    return after


def make_plan(shape: tuple[int, int], groups: list[PulseGroup], bias: BiasScheme) -> PulsePlan:
    return PulsePlan(rows=shape[0], cols=shape[1], groups=tuple(groups), bias=bias)


def ispp_shape(
    pulses: PulsePair, polarity: int, level: int, v_step: float, w_step: float
) -> PulseShape:
    """Nominal pulse of a polarity raised by `level` ISPP steps in amplitude and width."""
    base = pulses.set if polarity > 0 else pulses.reset
    amp = abs(base.amplitude_v) + level * v_step
    return PulseShape(amplitude_v=float(polarity * amp), width_s=base.width_s + level * w_step)
