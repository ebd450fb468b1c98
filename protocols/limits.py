"""Safety limits: what may never be sent to a device, checked before the first byte.

A violation names the device (row, col), the offending value and the limit, so that a
researcher sees exactly which pulse would have been unsafe. Checks are vectorised.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocols.errors import InputError
from protocols.plan import PulsePlan


class LimitViolation(InputError):
    """A pulse plan breaks a safety limit; nothing of it may be sent."""


class SafetyLimits(BaseModel):
    """Hard limits for programming pulses. Defaults are conservative for oxide RRAM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_set_v: float = Field(default=3.0, gt=0.0, description="largest SET amplitude, V")
    max_reset_v: float = Field(default=3.0, gt=0.0, description="largest |RESET| amplitude, V")
    max_width_s: float = Field(default=1e-3, gt=0.0, description="longest pulse width, s")
    compliance_a: float = Field(default=1e-3, gt=0.0, description="current compliance, A")
    max_pulses_per_device_per_update: int = Field(default=64, ge=1)
    max_pulses_per_device_per_run: int = Field(default=10_000_000, ge=1)
    max_energy_per_update_j: float = Field(default=1e-3, gt=0.0)
    max_half_select_v: float | None = Field(
        default=None,
        gt=0.0,
        description="largest |V| a half-selected device may see under V/2 or V/3 biasing, V "
        "(None: not checked)",
    )

    @field_validator(
        "max_set_v",
        "max_reset_v",
        "max_width_s",
        "compliance_a",
        "max_energy_per_update_j",
        "max_half_select_v",
    )
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        return value


def _first_device(mask: NDArray[np.bool_]) -> tuple[int, int]:
    """(row, col) of the first True entry; argmax avoids building an index of all of them."""
    flat = int(np.argmax(mask))
    row, col = divmod(flat, mask.shape[1])
    return row, col


def check_plan(
    plan: PulsePlan,
    limits: SafetyLimits,
    *,
    conductance_s: NDArray[np.float64] | None = None,
    run_counts: NDArray[np.int64] | None = None,
) -> None:
    """Raise `LimitViolation` if any pulse of `plan` breaks `limits`; return None otherwise.

    `conductance_s` enables the compliance and energy checks; `run_counts` (pulses already
    delivered to each device in this run) enables the per-run budget.
    """
    if conductance_s is not None:
        conductance_s = np.asarray(conductance_s, dtype=np.float64)
        if conductance_s.shape != plan.shape:
            raise ValueError(
                f"conductance_s has shape {conductance_s.shape}, the plan is {plan.shape}"
            )
        if not np.isfinite(conductance_s).all():  # NaN would pass every comparison below
            r, c = _first_device(~np.isfinite(conductance_s))
            raise LimitViolation(
                f"conductance of device (row={r}, col={c}) is {conductance_s[r, c]}: compliance "
                "and energy cannot be checked, nothing is sent"
            )
    # Sum of the groups' largest counts: an upper bound of any device's pulses in this plan,
    # which spares the per-device sums (two full-array temporaries) when no limit is near.
    bound = 0
    for k, group in enumerate(plan.groups):
        if group.total == 0:
            continue
        bound += group.max_count
        amp = group.shape.amplitude_v
        # Located only when a check fails: finding it costs a pass over the array.
        device = (-1, -1)
        if (
            (amp > 0 and amp > limits.max_set_v)
            or (amp < 0 and -amp > limits.max_reset_v)
            or group.shape.width_s > limits.max_width_s
            or (limits.max_half_select_v is not None and plan.bias != "none")
        ):
            device = _first_device(group.counts > 0)
        if amp > 0 and amp > limits.max_set_v:
            raise LimitViolation(
                f"group {k}: SET amplitude {amp:g} V for device (row={device[0]}, col={device[1]}) "
                f"exceeds max_set_v={limits.max_set_v:g} V"
            )
        if amp < 0 and -amp > limits.max_reset_v:
            raise LimitViolation(
                f"group {k}: RESET amplitude {amp:g} V for device (row={device[0]}, "
                f"col={device[1]}) exceeds max_reset_v={limits.max_reset_v:g} V"
            )
        if limits.max_half_select_v is not None and plan.bias != "none":
            half = abs(amp) / (2.0 if plan.bias == "v2" else 3.0)
            if half > limits.max_half_select_v:
                raise LimitViolation(
                    f"group {k}: {plan.bias} biasing puts {half:g} V on devices sharing a line "
                    f"with device (row={device[0]}, col={device[1]}), over "
                    f"max_half_select_v={limits.max_half_select_v:g} V"
                )
        if group.shape.width_s > limits.max_width_s:
            raise LimitViolation(
                f"group {k}: pulse width {group.shape.width_s:g} s for device (row={device[0]}, "
                f"col={device[1]}) exceeds max_width_s={limits.max_width_s:g} s"
            )
        if conductance_s is not None:
            current = np.abs(amp) * np.where(group.counts > 0, conductance_s, 0.0)
            over = current > limits.compliance_a
            if over.any():
                r, c = _first_device(over)
                raise LimitViolation(
                    f"group {k}: device (row={r}, col={c}) would draw {current[r, c]:.3g} A at "
                    f"{amp:g} V, over compliance_a={limits.compliance_a:g} A"
                )
    if bound > limits.max_pulses_per_device_per_update:
        per_device = plan.counts_per_device()
        over = per_device > limits.max_pulses_per_device_per_update
        if over.any():
            r, c = _first_device(over)
            raise LimitViolation(
                f"device (row={r}, col={c}) would receive {per_device[r, c]} pulses in one "
                f"update, over max_pulses_per_device_per_update="
                f"{limits.max_pulses_per_device_per_update}"
            )
    run = None if run_counts is None else np.asarray(run_counts)
    if (
        run is not None
        and run.size
        and int(run.max()) + bound > limits.max_pulses_per_device_per_run
    ):
        after = run + plan.counts_per_device()
        over = after > limits.max_pulses_per_device_per_run
        if over.any():
            r, c = _first_device(over)
            raise LimitViolation(
                f"device (row={r}, col={c}) would reach {after[r, c]} pulses in this run, "
                f"over max_pulses_per_device_per_run={limits.max_pulses_per_device_per_run}"
            )
    if conductance_s is not None:
        energy = plan.energy_estimate_j(conductance_s)
        if energy > limits.max_energy_per_update_j:
            raise LimitViolation(
                f"plan energy {energy:.3g} J exceeds "
                f"max_energy_per_update_j={limits.max_energy_per_update_j:g} J"
            )
