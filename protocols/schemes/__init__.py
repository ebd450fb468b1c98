"""Programming schemes: a requested conductance change per device becomes a checked pulse plan.

`plan_update` is the one entry for open-loop schemes (manhattan, proportional,
outer_product); `WriteVerifyPlanner` is the closed-loop one (read -> plan -> read). Every plan
is checked against the safety limits before it is returned; on a violation
`LimitViolation` is raised and nothing is returned.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import numpy as np
from numpy.typing import ArrayLike

from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.plan import PulsePlan
from protocols.response import DeviceResponse
from protocols.schemes.common import (
    PlannedUpdate,
    UpdateRequest,
    as_grid,
    expected_after,
    stochastic_round,
)
from protocols.schemes.manhattan import plan_manhattan
from protocols.schemes.outer_product import plan_outer_product
from protocols.schemes.proportional import plan_proportional
from protocols.schemes.write_verify import WriteVerifyPlanner
from protocols.spec import (
    ManhattanScheme,
    OuterProductScheme,
    ProportionalScheme,
    PulsePair,
    WriteVerifyScheme,
)

OpenLoopScheme = ManhattanScheme | ProportionalScheme | OuterProductScheme
P = ParamSpec("P")

__all__ = [
    "OpenLoopScheme",
    "PlannedUpdate",
    "UpdateRequest",
    "WriteVerifyPlanner",
    "expected_after",
    "plan_request",
    "plan_update",
    "plan_update_detailed",
    "stochastic_round",
]


def plan_request(
    scheme: OpenLoopScheme | WriteVerifyScheme, request: UpdateRequest
) -> PlannedUpdate:
    """Plan an already checked `request` with its open-loop scheme."""
    if isinstance(scheme, ManhattanScheme):
        return plan_manhattan(scheme, request)
    if isinstance(scheme, ProportionalScheme):
        return plan_proportional(scheme, request)
    if isinstance(scheme, OuterProductScheme):
        return plan_outer_product(scheme, request)
    if isinstance(scheme, WriteVerifyScheme):
        raise InputError(
            "write_verify is closed-loop (read, pulse, read): use "
            "protocols.schemes.WriteVerifyPlanner or hil.insitu.programming.program"
        )
    raise TypeError(f"unknown scheme {type(scheme).__name__}")


def plan_update_detailed(
    scheme: OpenLoopScheme | WriteVerifyScheme,
    delta_g: ArrayLike,
    g: ArrayLike,
    response: DeviceResponse,
    pulses: PulsePair,
    limits: SafetyLimits,
    *,
    rng: np.random.Generator | None = None,
    run_counts: ArrayLike | None = None,
) -> PlannedUpdate:
    """Plan `delta_g` (S, rows x cols) from conductances `g` (S); plan plus expectations.

    `rng` is required by stochastic rounding (proportional default, outer_product).
    `run_counts` (pulses already delivered in this run) enables the per-run budget check.
    """
    dg = as_grid("delta_g", delta_g)
    g_arr = as_grid("g", g, dg.shape)
    counts = None if run_counts is None else np.asarray(run_counts, dtype=np.int64)
    if counts is not None and counts.shape != dg.shape:
        raise InputError(f"run_counts has shape {counts.shape}, expected {dg.shape}")
    return plan_request(scheme, UpdateRequest(dg, g_arr, response, pulses, limits, rng, counts))


def _plan_only(detailed: Callable[P, PlannedUpdate]) -> Callable[P, PulsePlan]:
    """The same call as `detailed`, returning only the checked plan."""

    @functools.wraps(detailed)
    def plan_only(*args: P.args, **kwargs: P.kwargs) -> PulsePlan:
        return detailed(*args, **kwargs).plan

    return plan_only


plan_update = _plan_only(plan_update_detailed)
plan_update.__name__ = plan_update.__qualname__ = "plan_update"
plan_update.__doc__ = (
    "The checked pulse plan for a requested change `delta_g` (see `plan_update_detailed`)."
)
