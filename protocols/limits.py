"""Safety limits: what may never be sent to a device, checked before the first byte.

A violation names the device (row, col), the offending value and the limit, so that a
researcher sees exactly which pulse would have been unsafe. Checks are vectorised.

Limits come from several sources (a protocol file, a run config, the simulator's defaults),
and this module is where they meet: the hard ceilings no source may exceed, the partial
`LimitsOverride` of a run config and `merge_limits`, which lays it field by field on the
protocol's limits (tightening freely, raising only a field the override names in
`allow_raise`), and the read-voltage rule (`check_read_voltage`). Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from protocols.errors import InputError
from protocols.plan import PulsePlan

#: Ceilings no source of limits may exceed, whatever it says (sanity, not physics): a
#: protocol file, a run config's override with `allow_raise`, the simulator's defaults.
HARD_MAX_V = 20.0
HARD_MAX_WIDTH_S = 1.0
HARD_MAX_COMPLIANCE_A = 0.1
HARD_MAX_PULSES_PER_UPDATE = 100_000
HARD_MAX_PULSES_PER_RUN = 10**12
HARD_MAX_ENERGY_J = 1.0
#: The highest read voltage any source may ask for (a read must never program).
HARD_MAX_READ_V = 2.0
#: The read voltage when nothing says otherwise (a protocol's default `read.voltage_v`).
DEFAULT_READ_V = 0.1

_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def yaml_float(value: Any) -> Any:
    """Read a YAML-1.1 exponent string such as '1e-6' as a float; reject NaN and infinity."""
    if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


#: A float as written in a YAML or JSON file (see `yaml_float`).
Num = Annotated[float, BeforeValidator(yaml_float)]


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


#: Every limit field and its hard ceiling.
HARD_CEILINGS: dict[str, float] = {
    "max_set_v": HARD_MAX_V,
    "max_reset_v": HARD_MAX_V,
    "max_width_s": HARD_MAX_WIDTH_S,
    "compliance_a": HARD_MAX_COMPLIANCE_A,
    "max_pulses_per_device_per_update": HARD_MAX_PULSES_PER_UPDATE,
    "max_pulses_per_device_per_run": HARD_MAX_PULSES_PER_RUN,
    "max_energy_per_update_j": HARD_MAX_ENERGY_J,
    "max_half_select_v": HARD_MAX_V,
}
#: The fields that may be None (not checked); None counts as higher than any number.
OPTIONAL_FIELDS = ("max_half_select_v",)
LIMIT_FIELDS: tuple[str, ...] = tuple(SafetyLimits.model_fields)


def check_ceilings(limits: SafetyLimits, source: str) -> None:
    """InputError naming the first field of `limits` above its hard ceiling."""
    for name, ceiling in HARD_CEILINGS.items():
        value = getattr(limits, name)
        if value is not None and value > ceiling:
            raise InputError(
                f"{source}: {name} = {value:g} is above the hard ceiling {ceiling:g}, which no "
                "source of limits may exceed"
            )


def cap_to_ceilings(limits: SafetyLimits) -> SafetyLimits:
    """`limits` with every field cut to its hard ceiling (for derived defaults)."""
    update = {
        name: ceiling
        for name, ceiling in HARD_CEILINGS.items()
        if getattr(limits, name) is not None and getattr(limits, name) > ceiling
    }
    return limits.model_copy(update=update) if update else limits


class LimitsOverride(BaseModel):
    """The `limits:` of a run config: a partial override laid on the protocol's limits.

    Only the fields written are changed; each stays under its hard ceiling. A value above
    the protocol's is refused unless `allow_raise` names the field (`max_half_select_v:
    null` switches a check off, which counts as raising it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_set_v: Num | None = Field(default=None, gt=0.0, le=HARD_MAX_V)
    max_reset_v: Num | None = Field(default=None, gt=0.0, le=HARD_MAX_V)
    max_width_s: Num | None = Field(default=None, gt=0.0, le=HARD_MAX_WIDTH_S)
    compliance_a: Num | None = Field(default=None, gt=0.0, le=HARD_MAX_COMPLIANCE_A)
    max_pulses_per_device_per_update: int | None = Field(
        default=None, ge=1, le=HARD_MAX_PULSES_PER_UPDATE
    )
    max_pulses_per_device_per_run: int | None = Field(
        default=None, ge=1, le=HARD_MAX_PULSES_PER_RUN
    )
    max_energy_per_update_j: Num | None = Field(default=None, gt=0.0, le=HARD_MAX_ENERGY_J)
    max_half_select_v: Num | None = Field(default=None, gt=0.0, le=HARD_MAX_V)
    allow_raise: list[str] = Field(
        default_factory=list,
        description="the fields this override may set above the protocol's value, on purpose",
    )

    @model_validator(mode="after")
    def _consistent(self) -> LimitsOverride:
        given = self.model_fields_set - {"allow_raise"}
        for name in sorted(given):
            if getattr(self, name) is None and name not in OPTIONAL_FIELDS:
                raise ValueError(
                    f"limits.{name} may not be null (only {', '.join(OPTIONAL_FIELDS)} can be "
                    "switched off)"
                )
        seen: set[str] = set()
        for name in self.allow_raise:
            if name not in LIMIT_FIELDS:
                raise ValueError(
                    f"limits.allow_raise names {name!r}, which is no limit; limits are "
                    f"{', '.join(LIMIT_FIELDS)}"
                )
            if name in seen:
                raise ValueError(f"limits.allow_raise names {name!r} twice")
            seen.add(name)
            if name not in given:
                raise ValueError(
                    f"limits.allow_raise names {name!r}, but the override does not set it"
                )
        return self

    @model_serializer(mode="wrap")
    def _written_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump only the fields that were written: an unwritten field is not null (null
        switches a check off), so the dump reloads to the same override."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set or k == "allow_raise"}

    def values(self) -> dict[str, Any]:
        """The limit fields this override sets (not `allow_raise`)."""
        return {name: getattr(self, name) for name in LIMIT_FIELDS if name in self.model_fields_set}


@dataclass(frozen=True)
class LimitChange:
    """One field an override moved: from the base value to the new one (None: unchecked)."""

    field: str
    before: float | None
    after: float | None

    def describe(self) -> str:
        def show(v: float | None) -> str:
            return "off" if v is None else f"{v:g}"

        return f"{self.field} {show(self.before)} -> {show(self.after)}"


@dataclass(frozen=True)
class MergedLimits:
    """The effective limits and how they differ from the base (the protocol's)."""

    limits: SafetyLimits
    raised: tuple[LimitChange, ...]
    tightened: tuple[LimitChange, ...]

    def pinned(self) -> LimitsOverride:
        """An override that reproduces these limits exactly from the same base (every field
        written, the raised ones named in `allow_raise`): what a resolved config keeps."""
        return LimitsOverride.model_validate(
            {
                **self.limits.model_dump(),
                "allow_raise": [c.field for c in self.raised],
            }
        )


def _higher(after: float | None, before: float | None) -> bool:
    """True when `after` allows more than `before` (None: not checked, i.e. unbounded)."""
    if after is None:
        return before is not None
    return before is not None and after > before


def merge_limits(
    base: SafetyLimits, override: LimitsOverride | None, *, base_source: str = "the protocol"
) -> MergedLimits:
    """Lay `override` field by field on `base`; refuse a raise its `allow_raise` does not name.

    The base itself must respect the hard ceilings (a derived default is capped by the
    caller with `cap_to_ceilings`); the result always does.
    """
    check_ceilings(base, f"limits of {base_source}")
    if override is None:
        return MergedLimits(base, (), ())
    values = override.values()
    raised: list[LimitChange] = []
    tightened: list[LimitChange] = []
    for name, after in values.items():
        before = getattr(base, name)
        change = LimitChange(name, before, after)
        if _higher(after, before):
            if name not in override.allow_raise:
                now = "switches off" if after is None else f"= {after:g} raises"
                raise InputError(
                    f"limits.{name} {now} the limit of {base_source} ({before:g}); to raise it "
                    f"on purpose, add `allow_raise: [{name}]` to the run config's limits"
                )
            raised.append(change)
        elif after != before:
            tightened.append(change)
    merged = SafetyLimits(**{**base.model_dump(), **values})
    check_ceilings(merged, "effective limits")
    return MergedLimits(merged, tuple(raised), tuple(tightened))


def read_ceiling(
    limits: SafetyLimits, *, switching_v: float | None = None, nominal_v: float | None = None
) -> tuple[float, str]:
    """The voltage every read must stay strictly below, and what sets it.

    The smaller of the SET and RESET limits, the device's smaller switching threshold
    (`switching_v`, when known) and the smaller nominal programming amplitude (`nominal_v`:
    a pulse of that size is known to move the device).
    """
    bounds = [
        (limits.max_set_v, f"max_set_v = {limits.max_set_v:g} V"),
        (limits.max_reset_v, f"max_reset_v = {limits.max_reset_v:g} V"),
    ]
    if switching_v is not None:
        bounds.append((switching_v, f"the switching threshold {switching_v:g} V"))
    if nominal_v is not None:
        bounds.append((nominal_v, f"the nominal programming amplitude {nominal_v:g} V"))
    return min(bounds, key=lambda b: b[0])


def check_read_voltage(
    read_v: float,
    limits: SafetyLimits,
    *,
    switching_v: float | None = None,
    nominal_v: float | None = None,
    source: str = "read voltage",
) -> None:
    """LimitViolation unless 0 < `read_v` < `read_ceiling(...)` and `read_v` <=
    `HARD_MAX_READ_V`: a read that could disturb the devices (at or above a switching
    threshold or a SET/RESET limit) is never made."""
    if isinstance(read_v, bool) or not (
        isinstance(read_v, int | float) and math.isfinite(read_v) and read_v > 0.0
    ):
        raise LimitViolation(f"{source} {read_v!r} V: a read needs a finite voltage > 0")
    if read_v > HARD_MAX_READ_V:
        raise LimitViolation(
            f"{source} {read_v:g} V is above the hard read ceiling {HARD_MAX_READ_V:g} V"
        )
    ceiling, what = read_ceiling(limits, switching_v=switching_v, nominal_v=nominal_v)
    if read_v >= ceiling:
        raise LimitViolation(
            f"{source} {read_v:g} V could disturb the devices: a read must stay below {what}"
        )


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
