"""Manhattan (sign-only) updates: one pulse of the sign of dG where |dG| exceeds a threshold.

Cheapest and most robust (no model needed beyond the threshold), but the magnitude of the
request is lost: the device's own step size sets the learning rate.
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
    signed_groups,
    signed_step,
)
from protocols.spec import ManhattanScheme, PulsePair


def plan_manhattan(
    scheme: ManhattanScheme,
    delta_g: Array,
    g: Array,
    response: DeviceResponse,
    pulses: PulsePair,
    limits: SafetyLimits,
    run_counts: IntArray | None,
) -> PlannedUpdate:
    step = signed_step(response, g, delta_g)
    threshold = np.maximum(scheme.threshold_s, scheme.threshold_steps * step)
    fire = (np.abs(delta_g) > threshold) & (delta_g != 0.0)
    signed = np.where(fire, np.sign(delta_g), 0.0).astype(np.int64)
    plan = make_plan(delta_g.shape, signed_groups(signed, pulses), scheme.bias)
    after = finish(plan, g, response, limits, run_counts)
    requested = np.divide(delta_g, step, out=np.zeros_like(delta_g), where=step > 0)
    clipped = fire & (np.abs(requested) > 1.0)
    return PlannedUpdate(plan, after - g, requested, clipped)
