"""Closed-loop programming: read -> pulse -> read until every device is on its target.

Drives `protocols.schemes.WriteVerifyPlanner` on any `CrossbarBackend`: the planner decides
(ISPP levels, pulse counts, limits checked), this loop only reads, applies and repeats. Used
for the initial programming of a network and by the write-verify checks of a protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from protocols.backend import CrossbarBackend
from protocols.limits import SafetyLimits
from protocols.plan import PulsePlan
from protocols.response import DeviceResponse
from protocols.schemes import WriteVerifyPlanner
from protocols.spec import PulsePair, ReadSpec, WriteVerifyScheme


@dataclass(frozen=True)
class ProgramResult:
    """Where programming ended: final reads, which devices converged, what it cost."""

    conductance: NDArray[np.float64]
    converged: NDArray[np.bool_]
    iterations: int
    pulses: NDArray[np.int64]
    error: NDArray[np.float64]
    status: str  # "converged" or "iteration_cap"
    tolerance_s: float

    @property
    def converged_fraction(self) -> float:
        return float(self.converged.mean())


def read_averaged(backend: CrossbarBackend, averages: int = 1) -> NDArray[np.float64]:
    """Mean of `averages` full-array reads."""
    total = backend.read()
    for _ in range(averages - 1):
        total = total + backend.read()
    return total / averages


def program(
    backend: CrossbarBackend,
    targets: ArrayLike,
    *,
    scheme: WriteVerifyScheme,
    pulses: PulsePair,
    response: DeviceResponse,
    read: ReadSpec | None = None,
    limits: SafetyLimits | None = None,
    mask: ArrayLike | None = None,
    on_iteration: Callable[[int, int], None] | None = None,
    send: Callable[[PulsePlan], None] | None = None,
    run_counts: ArrayLike | None = None,
    read_fn: Callable[[], NDArray[np.float64]] | None = None,
    start: ArrayLike | None = None,
) -> ProgramResult:
    """Write-and-verify `targets` (S) onto `backend`; devices outside `mask` are left alone.

    `limits` defaults to the backend's; the backend checks them again before sending.
    `on_iteration(iteration, devices_left)` is called after each read, for progress display.
    `send(plan)` delivers each checked plan (default `backend.apply`): a caller that journals
    its plans passes its own journal -> apply -> journal path, so the loop exists once.
    `run_counts` (default the backend's pulse counts) is what the per-run budget check sees.
    `read_fn` replaces the averaged backend read (a caller that counts its reads), and
    `start` (the caller's latest read) replaces the first read.
    """
    spec = read if read is not None else ReadSpec()
    planner = WriteVerifyPlanner(
        scheme,
        pulses,
        limits if limits is not None else backend.limits,
        response,
        targets,
        mask=mask,
        run_counts=backend.pulse_counts if run_counts is None else run_counts,
    )
    deliver = backend.apply if send is None else send
    g = planner.run(
        read_averaged(backend, spec.averages) if start is None else start,
        lambda plan, _g: deliver(plan),
        (lambda: read_averaged(backend, spec.averages)) if read_fn is None else read_fn,
        on_iteration,
    )
    return ProgramResult(
        conductance=g,
        converged=planner.converged.copy(),
        iterations=planner.iterations,
        pulses=planner.pulses_applied.copy(),
        error=planner.remaining_error(g),
        status=planner.status,
        tolerance_s=float(planner.tolerance_s),
    )
