"""Proportional pulse counts: n = |dG| / expected step (or the model inverse), capped.

Stochastic rounding makes the expected change equal the request on a linear device (no
update is lost for being smaller than half a step); "inverse" counting uses the mean device
curve to remove the nonlinearity from the expectation. Devices whose request exceeds the cap
are clipped (and marked), never silently over-pulsed.
"""

from __future__ import annotations

import numpy as np

from protocols.schemes.common import (
    Array,
    PlannedUpdate,
    UpdateRequest,
    make_plan,
    per_update_cap,
    signed_groups,
    stochastic_round,
)
from protocols.spec import ProportionalScheme


def requested_counts(scheme: ProportionalScheme, req: UpdateRequest) -> Array:
    """Signed real-valued pulse count per device before rounding and capping."""
    if scheme.count == "inverse":
        g = req.g
        return np.asarray(req.response.pulses_between(g, g + req.delta_g), dtype=np.float64)
    return req.counts_per_step()


def plan_proportional(scheme: ProportionalScheme, req: UpdateRequest) -> PlannedUpdate:
    requested = requested_counts(scheme, req)
    cap = per_update_cap(scheme.max_pulses, req.limits)
    magnitude = np.abs(requested)
    clipped = magnitude > cap
    magnitude = np.minimum(magnitude, cap)
    if scheme.rounding == "stochastic":
        if req.rng is None:
            raise ValueError("stochastic rounding needs a numpy Generator (rng=...)")
        counts = stochastic_round(magnitude, req.rng)
    else:
        counts = np.rint(magnitude).astype(np.int64)
    signed = np.where(requested < 0, -counts, counts)
    plan = make_plan(req.shape, signed_groups(signed, req.pulses), scheme.bias)
    after = req.finish(plan)
    return PlannedUpdate(plan, after - req.g, requested, clipped)
