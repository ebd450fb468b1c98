"""Proportional pulse counts: n = |dG| / expected step (or the model inverse), capped.

Stochastic rounding makes the expected change equal the request on a linear device (no
update is lost for being smaller than half a step); "inverse" counting uses the mean device
curve to remove the nonlinearity from the expectation. Devices whose request exceeds the cap
are clipped (and marked), never silently over-pulsed.
"""

from __future__ import annotations

import numpy as np

from protocols.limits import SafetyLimits
from protocols.response import DeviceResponse
from protocols.schemes.common import (
    Array,
    IntArray,
    PlannedUpdate,
    finish,
    make_plan,
    per_update_cap,
    signed_groups,
    signed_step,
    stochastic_round,
)
from protocols.spec import ProportionalScheme, PulsePair


def requested_counts(
    scheme: ProportionalScheme, delta_g: Array, g: Array, response: DeviceResponse
) -> Array:
    """Signed real-valued pulse count per device before rounding and capping."""
    if scheme.count == "inverse":
        return np.asarray(response.pulses_between(g, g + delta_g), dtype=np.float64)
    step = signed_step(response, g, delta_g)
    return np.divide(delta_g, step, out=np.zeros_like(delta_g), where=step > 0)


def plan_proportional(
    scheme: ProportionalScheme,
    delta_g: Array,
    g: Array,
    response: DeviceResponse,
    pulses: PulsePair,
    limits: SafetyLimits,
    rng: np.random.Generator | None,
    run_counts: IntArray | None,
) -> PlannedUpdate:
    requested = requested_counts(scheme, delta_g, g, response)
    cap = per_update_cap(scheme.max_pulses, limits)
    magnitude = np.abs(requested)
    clipped = magnitude > cap
    magnitude = np.minimum(magnitude, cap)
    if scheme.rounding == "stochastic":
        if rng is None:
            raise ValueError("stochastic rounding needs a numpy Generator (rng=...)")
        counts = stochastic_round(magnitude, rng)
    else:
        counts = np.rint(magnitude).astype(np.int64)
    signed = np.where(requested < 0, -counts, counts)
    plan = make_plan(delta_g.shape, signed_groups(signed, pulses), scheme.bias)
    after = finish(plan, g, response, limits, run_counts)
    return PlannedUpdate(plan, after - g, requested, clipped)
