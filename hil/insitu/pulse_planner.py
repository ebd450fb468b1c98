"""From a requested dG per device to pulses on the backend, through the configured scheme.

Open-loop schemes (manhattan, proportional, outer_product) make one plan per presentation
and return the mean-model expectation of the new conductances. Write-verify is closed loop:
read, pulse toward the target, read again, until every device is within tolerance or the
iteration cap; each round is its own plan. Every plan leaves through `send`, which the
training loop binds to check -> journal -> apply -> journal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulseGroup, PulsePlan
from protocols.response import DeviceResponse
from protocols.schemes import UpdateRequest, WriteVerifyPlanner, plan_request
from protocols.spec import (
    ManhattanScheme,
    OuterProductScheme,
    ProportionalScheme,
    PulsePair,
    Scheme,
    WriteVerifyScheme,
)

Array = NDArray[np.float64]
_DEVICE = re.compile(r"device \(row=(\d+), col=(\d+)\)")


def _relocate(message: str, idx: NDArray[np.intp], cols: int) -> str:
    """Rewrite 'device (row=0, col=k)' of a one-row compact plan to the array position."""

    def where(match: re.Match[str]) -> str:
        r, c = divmod(int(idx[int(match.group(2))]), cols)
        return f"device (row={r}, col={c})"

    return _DEVICE.sub(where, message)


def programming_scheme(
    tolerance: float, max_iterations: int, limits: SafetyLimits
) -> WriteVerifyScheme:
    """The write-verify scheme of the initial programming (its ISPP steps are the defaults)."""
    return WriteVerifyScheme(
        kind="write_verify",
        tolerance_frac=tolerance,
        max_iterations=max_iterations,
        pulses_per_iteration="model",
        max_pulses_per_iteration=limits.max_pulses_per_device_per_update,
    )


Send = Callable[[PulsePlan, Array], None]
Read = Callable[[], Array]


@dataclass
class UpdatePlanner:
    """Binds a scheme to a device response model, nominal pulses and safety limits."""

    scheme: Scheme
    response: DeviceResponse
    pulses: PulsePair
    limits: SafetyLimits
    run_counts: Callable[[], NDArray[np.int64]] | None = None
    #: write-verify in the loop: the accumulated target conductances (accumulate-and-fire,
    #: so updates smaller than the tolerance add up instead of being lost).
    wv_target: Array | None = None

    @property
    def g_range(self) -> tuple[float, float]:
        return (self.response.g_min_s, self.response.g_max_s)

    def _counts(self) -> NDArray[np.int64] | None:
        return None if self.run_counts is None else self.run_counts()

    def _request(
        self,
        dG: Array,
        g: Array,
        rng: np.random.Generator,
        counts: NDArray[np.int64] | None,
    ) -> UpdateRequest:
        return UpdateRequest(dG, g, self.response, self.pulses, self.limits, rng, counts)

    def plan_open_loop(
        self, scheme: Scheme, dG: Array, g: Array, rng: np.random.Generator
    ) -> tuple[PulsePlan, Array]:
        """One checked plan for dG and the conductances the mean model expects after it.

        Per-device schemes (manhattan, proportional) are planned on the devices that have a
        request only (the split leaves one device of every pair idle, so about half), laid
        out as one row, then scattered back: the same plan rules at half the cost. A limit
        violation names the device by its place on the array. The outer-product scheme needs
        the array's rows and columns and is planned on the whole grid.
        """
        counts = self._counts()
        if isinstance(scheme, ManhattanScheme | ProportionalScheme):
            return self._plan_requested(scheme, dG, g, rng, counts)
        if isinstance(scheme, OuterProductScheme):
            out = plan_request(scheme, self._request(dG, g, rng, counts))
            return out.plan, g + out.expected_delta_g
        raise TypeError(f"{type(scheme).__name__} is not an open-loop scheme")

    def _plan_requested(
        self,
        scheme: ManhattanScheme | ProportionalScheme,
        dG: Array,
        g: Array,
        rng: np.random.Generator,
        counts: NDArray[np.int64] | None,
    ) -> tuple[PulsePlan, Array]:
        rows, cols = dG.shape
        idx = np.flatnonzero(dG != 0.0)  # a bool scan: several times faster than on floats
        if idx.size == 0:
            return PulsePlan.empty((rows, cols)), g.copy()
        d_c = dG.reshape(-1)[idx][None, :]
        g_c = g.reshape(-1)[idx][None, :]
        n_c = None if counts is None else counts.reshape(-1)[idx][None, :]
        try:
            out = plan_request(scheme, self._request(d_c, g_c, rng, n_c))
        except LimitViolation as exc:
            raise LimitViolation(_relocate(str(exc), idx, cols)) from None
        groups = []
        for group in out.plan.groups:
            full = np.zeros(rows * cols, dtype=np.int64)
            full[idx] = group.counts[0]
            groups.append(PulseGroup(group.shape, full.reshape(rows, cols), group.parallel))
        plan = PulsePlan(rows=rows, cols=cols, groups=tuple(groups), bias=out.plan.bias)
        expected = np.array(g, dtype=np.float64, copy=True)
        expected.reshape(-1)[idx] += out.expected_delta_g[0]
        return plan, expected

    def update(
        self,
        dG: Array,
        g: Array,
        *,
        rng: np.random.Generator,
        send: Send,
        read: Read,
        exclude: NDArray[np.bool_] | None = None,
    ) -> Array:
        """Deliver dG; return the new conductance estimate (expected, or read when verified)."""
        if isinstance(self.scheme, WriteVerifyScheme):
            lo, hi = self.g_range
            base = g if self.wv_target is None else self.wv_target
            self.wv_target = np.clip(base + dG, lo, hi)
            active = np.ones(g.shape, dtype=bool) if exclude is None else ~exclude
            return self.write_verify(self.scheme, self.wv_target, g, active, send=send, read=read)
        plan, expected = self.plan_open_loop(self.scheme, dG, g, rng)
        send(plan, g)
        return expected

    def write_verify(
        self,
        scheme: WriteVerifyScheme,
        target: Array,
        g: Array,
        active: NDArray[np.bool_],
        *,
        send: Send,
        read: Read,
    ) -> Array:
        """Read -> pulse toward target -> read, until within tolerance or the iteration cap.

        The rounds are planned by the protocols' `WriteVerifyPlanner` (ISPP levels, counts
        from the mean device curve, limits checked); each round leaves through `send`, so it
        is journaled like any other plan.
        """
        planner = WriteVerifyPlanner(
            scheme,
            self.pulses,
            self.limits,
            self.response,
            target,
            mask=active,
            run_counts=self._counts(),
        )
        return planner.run(g, send, read)

    def program(
        self,
        target: Array,
        g: Array,
        *,
        tolerance: float,
        max_iterations: int,
        send: Send,
        read: Read,
    ) -> Array:
        """Initial programming of every device to `target` by write-verify.

        Rounds may use the whole per-update pulse budget of the limits: devices start far
        from their targets (at a bound), unlike the small moves of training.
        """
        scheme = programming_scheme(tolerance, max_iterations, self.limits)
        active = np.ones(target.shape, dtype=bool)
        return self.write_verify(scheme, target, g, active, send=send, read=read)
