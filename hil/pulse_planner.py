"""From a requested dG per device to pulses on the backend, through the configured scheme.

Open-loop schemes (manhattan, proportional, outer_product) make one plan per presentation
and return the mean-model expectation of the new conductances. Write-verify is closed loop:
read, pulse toward the target, read again, until every device is within tolerance or the
iteration cap; each round is its own plan. Every plan leaves through `send`, which the
training loop binds to check -> journal -> apply -> journal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from protocols.limits import SafetyLimits
from protocols.plan import PulsePlan
from protocols.response import DeviceResponse
from protocols.schemes import WriteVerifyPlanner
from protocols.schemes.common import expected_after
from protocols.schemes.manhattan import plan_manhattan
from protocols.schemes.outer_product import plan_outer_product
from protocols.schemes.proportional import plan_proportional
from protocols.spec import (
    ManhattanScheme,
    OuterProductScheme,
    ProportionalScheme,
    PulsePair,
    Scheme,
    WriteVerifyScheme,
)

Array = NDArray[np.float64]
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

    def plan_open_loop(
        self, scheme: Scheme, dG: Array, g: Array, rng: np.random.Generator
    ) -> tuple[PulsePlan, Array]:
        """One checked plan for dG and the conductances the mean model expects after it."""
        counts = self._counts()
        if isinstance(scheme, ManhattanScheme):
            out = plan_manhattan(scheme, dG, g, self.response, self.pulses, self.limits, counts)
        elif isinstance(scheme, ProportionalScheme):
            out = plan_proportional(
                scheme, dG, g, self.response, self.pulses, self.limits, rng, counts
            )
        elif isinstance(scheme, OuterProductScheme):
            out = plan_outer_product(
                scheme, dG, g, self.response, self.pulses, self.limits, rng, counts
            )
        else:  # pragma: no cover - closed-loop schemes are handled by the caller
            raise TypeError(f"{type(scheme).__name__} is not an open-loop scheme")
        return out.plan, g + out.expected_delta_g

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
        while (plan := planner.next_plan(g)) is not None:
            send(plan, g)
            g = read()
        return g

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
        scheme = WriteVerifyScheme(
            kind="write_verify",
            tolerance_frac=tolerance,
            max_iterations=max_iterations,
            pulses_per_iteration="model",
            max_pulses_per_iteration=self.limits.max_pulses_per_device_per_update,
        )
        active = np.ones(target.shape, dtype=bool)
        return self.write_verify(scheme, target, g, active, send=send, read=read)

    def expected(self, plan: PulsePlan, g: Array) -> Array:
        return expected_after(plan, g, self.response)
