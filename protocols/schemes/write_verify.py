"""Write-and-verify with incremental step pulse programming (ISPP), as a stateful planner.

The planner never touches hardware: it is given the latest read and answers with the next
plan, or None when every device is within tolerance of its target or the iteration cap is
reached. A device that keeps moving in the same direction climbs one ISPP level per
iteration (amplitude + v_step, width + width_step, never past the safety limits); a device
that overshoots flips polarity and restarts at the nominal pulse. With
``pulses_per_iteration: model`` the count per iteration comes from the mean device curve
(floored, at least 1), which reaches a far target in a few iterations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan
from protocols.response import DeviceResponse
from protocols.schemes.common import Array, as_grid, finish, ispp_shape, make_plan
from protocols.spec import PulsePair, WriteVerifyScheme


def _level_cap(
    scheme: WriteVerifyScheme, base_v: float, base_w: float, max_v: float, max_w: float
) -> int:
    cap = float(scheme.max_ispp_steps)
    for room, step in ((max_v - base_v, scheme.v_step_v), (max_w - base_w, scheme.width_step_s)):
        if step > 0:
            cap = min(cap, room / step + 1e-9)  # may be huge for a tiny step: stays a float
    return max(0, math.floor(cap))


class WriteVerifyPlanner:
    """Read -> plan -> (apply) -> read ... until every masked device is within tolerance."""

    def __init__(
        self,
        scheme: WriteVerifyScheme,
        pulses: PulsePair,
        limits: SafetyLimits,
        response: DeviceResponse,
        targets: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        run_counts: ArrayLike | None = None,
    ) -> None:
        self.scheme = scheme
        self.pulses = pulses
        self.limits = limits
        self.response = response
        self.targets = as_grid("targets", targets)
        shape = self.targets.shape
        self.mask = (
            np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).copy()
        )
        if self.mask.shape != shape:
            raise ValueError(f"mask has shape {self.mask.shape}, targets have {shape}")
        span = response.g_max_s - response.g_min_s
        self.tolerance_s = (
            scheme.tolerance_s if scheme.tolerance_s is not None else scheme.tolerance_frac * span
        )
        # A target the device cannot reach would be pulsed at climbing ISPP levels for every
        # iteration: refuse it before anything is planned.
        lo, hi = response.g_min_s - self.tolerance_s, response.g_max_s + self.tolerance_s
        outside = self.mask & ((self.targets < lo) | (self.targets > hi))
        if outside.any():
            r, c = np.argwhere(outside)[0]
            raise InputError(
                f"targets at device (row={r}, col={c}) is {self.targets[r, c]:.4g} S, outside "
                f"the response window [{response.g_min_s:.4g}, {response.g_max_s:.4g}] S "
                f"(+- tolerance {self.tolerance_s:.3g} S)"
            )
        self._cap_set = _level_cap(
            scheme, pulses.set.amplitude_v, pulses.set.width_s, limits.max_set_v, limits.max_width_s
        )
        self._cap_reset = _level_cap(
            scheme,
            -pulses.reset.amplitude_v,
            pulses.reset.width_s,
            limits.max_reset_v,
            limits.max_width_s,
        )
        self.level = np.zeros(shape, dtype=np.int64)
        self.direction = np.zeros(shape, dtype=np.int64)
        self.converged = np.zeros(shape, dtype=bool)
        self.iterations = 0
        self.pulses_applied = np.zeros(shape, dtype=np.int64)
        self._run_counts = (
            np.zeros(shape, dtype=np.int64)
            if run_counts is None
            else np.asarray(run_counts, dtype=np.int64).copy()
        )
        self.status = "running"

    @property
    def done(self) -> bool:
        return self.status != "running"

    def next_plan(self, g_read: ArrayLike) -> PulsePlan | None:
        """The next checked plan for the latest read, or None when finished."""
        g = as_grid("g_read", g_read, self.targets.shape)
        error = self.targets - g
        self.converged = self.mask & (np.abs(error) <= self.tolerance_s)
        todo = self.mask & ~self.converged
        if not todo.any():
            self.status = "converged"
            return None
        if self.iterations >= self.scheme.max_iterations:
            self.status = "iteration_cap"
            return None
        new_dir = np.where(todo, np.sign(error), 0).astype(np.int64)
        cap = np.where(new_dir > 0, self._cap_set, self._cap_reset)
        same = todo & (new_dir == self.direction)
        self.level = np.where(same, np.minimum(self.level + 1, cap), 0)
        self.direction = new_dir
        if self.scheme.pulses_per_iteration == "model":
            model = np.abs(np.asarray(self.response.pulses_between(g, self.targets)))
            counts = np.clip(np.floor(model), 1, self.scheme.max_pulses_per_iteration)
            counts = np.where(todo, counts, 0).astype(np.int64)
        else:
            counts = todo.astype(np.int64)
        groups: list[PulseGroup] = []
        for polarity in (1, -1):
            sel = new_dir == polarity
            if not sel.any():
                continue
            for level in np.unique(self.level[sel]):
                here = sel & (self.level == level)
                shape = ispp_shape(
                    self.pulses,
                    polarity,
                    int(level),
                    self.scheme.v_step_v,
                    self.scheme.width_step_s,
                )
                groups.append(PulseGroup(shape, np.where(here, counts, 0)))
        plan = make_plan(g.shape, groups, "none")
        finish(plan, g, self.response, self.limits, self._run_counts)
        per_device = plan.counts_per_device()
        self._run_counts += per_device
        self.pulses_applied += per_device
        self.iterations += 1
        return plan

    def run(
        self,
        g_read: ArrayLike,
        send: Callable[[PulsePlan, Array], None],
        read: Callable[[], Array],
        on_iteration: Callable[[int, int], None] | None = None,
    ) -> Array:
        """The closed loop: plan -> `send(plan, g_read)` -> `read()` until done; the last read.

        The one copy of the loop, for every caller (a backend's apply, a journaled send).
        `on_iteration(iteration, devices_left)` is called after each read.
        """
        g = as_grid("g_read", g_read, self.targets.shape)
        while (plan := self.next_plan(g)) is not None:
            send(plan, g)
            g = read()
            if on_iteration is not None:
                on_iteration(self.iterations, int((self.mask & ~self.converged).sum()))
        return g

    def remaining_error(self, g_read: ArrayLike) -> NDArray[np.float64]:
        g: Array = as_grid("g_read", g_read, self.targets.shape)
        return np.where(self.mask, g - self.targets, 0.0)
