"""Manhattan (sign-only) updates: one pulse of the sign of dG where |dG| exceeds a threshold.

Cheapest and most robust (no model needed beyond the threshold), but the magnitude of the
request is lost: the device's own step size sets the learning rate.
"""

from __future__ import annotations

import numpy as np

from protocols.schemes.common import PlannedUpdate, UpdateRequest, make_plan, signed_groups
from protocols.spec import ManhattanScheme


def plan_manhattan(scheme: ManhattanScheme, req: UpdateRequest) -> PlannedUpdate:
    delta_g = req.delta_g
    step = req.step()
    threshold = np.maximum(scheme.threshold_s, scheme.threshold_steps * step)
    fire = (np.abs(delta_g) > threshold) & (delta_g != 0.0)
    signed = np.where(fire, np.sign(delta_g), 0.0).astype(np.int64)
    plan = make_plan(req.shape, signed_groups(signed, req.pulses), scheme.bias)
    after = req.finish(plan)
    requested = req.counts_per_step(step)
    clipped = fire & (np.abs(requested) > 1.0)
    return PlannedUpdate(plan, after - req.g, requested, clipped)
