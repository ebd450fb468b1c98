"""The pulse-protocol file as strict data: pulses, reads, limits, scheme, acceptance.

Every model rejects unknown keys and wrong types (strict mode: no "3" for 3, no true for 1.0),
and every number must be finite and inside a physically sane bound, so that a typo in a
protocol file can never turn into a pulse. The one concession to YAML is that PyYAML (YAML
1.1) reads an exponent without a decimal point, such as ``1e-6``, as text; such strings are
read as the number they spell.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from protocols.limits import (
    DEFAULT_READ_V,
    HARD_MAX_COMPLIANCE_A,
    HARD_MAX_ENERGY_J,
    HARD_MAX_PULSES_PER_RUN,
    HARD_MAX_PULSES_PER_UPDATE,
    HARD_MAX_READ_V,
    HARD_MAX_V,
    HARD_MAX_WIDTH_S,
    Num,
    SafetyLimits,
)
from protocols.plan import BiasScheme, PulseShape

#: The protocol-file format this code reads.
PROTOCOL_VERSION = 1


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


class Strict(BaseModel):
    """Base of every protocol model: strict types, unknown keys rejected, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _all_finite(cls, value: Any) -> Any:
        if isinstance(value, float):
            return _finite(value)
        return value


class Pulse(Strict):
    """One programming pulse: signed amplitude (> 0 SET, < 0 RESET), width, optional edges."""

    amplitude_v: Num = Field(ge=-HARD_MAX_V, le=HARD_MAX_V)
    width_s: Num = Field(gt=0.0, le=HARD_MAX_WIDTH_S)
    rise_s: Num | None = Field(default=None, ge=0.0, le=HARD_MAX_WIDTH_S)
    fall_s: Num | None = Field(default=None, ge=0.0, le=HARD_MAX_WIDTH_S)

    @field_validator("amplitude_v")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0.0:
            raise ValueError("a programming pulse needs a non-zero amplitude")
        return value

    @model_validator(mode="after")
    def _edges_fit(self) -> Pulse:
        edges = (self.rise_s or 0.0) + (self.fall_s or 0.0)
        if edges > self.width_s:
            raise ValueError(
                f"rise_s + fall_s = {edges:g} s is longer than width_s = {self.width_s:g} s"
            )
        return self

    def shape(self) -> PulseShape:
        """The rectangular shape a pulse plan carries (edges are the instrument's business)."""
        return PulseShape(amplitude_v=self.amplitude_v, width_s=self.width_s)


class PulsePair(Strict):
    """The nominal SET (positive) and RESET (negative) pulses of a protocol."""

    set: Pulse
    reset: Pulse

    @field_validator("set")
    @classmethod
    def _set_positive(cls, value: Pulse) -> Pulse:
        if value.amplitude_v <= 0:
            raise ValueError(f"a SET pulse needs amplitude_v > 0, got {value.amplitude_v:g}")
        return value

    @field_validator("reset")
    @classmethod
    def _reset_negative(cls, value: Pulse) -> Pulse:
        if value.amplitude_v >= 0:
            raise ValueError(f"a RESET pulse needs amplitude_v < 0, got {value.amplitude_v:g}")
        return value

    def shape(self, polarity: int) -> PulseShape:
        """The nominal shape for +1 (SET) or -1 (RESET)."""
        return (self.set if polarity > 0 else self.reset).shape()


class ReadSpec(Strict):
    """How a conductance is read: voltage (below any switching threshold) and averaging."""

    voltage_v: Num = Field(default=DEFAULT_READ_V, gt=0.0, le=HARD_MAX_READ_V)
    averages: int = Field(default=1, ge=1, le=1024)
    width_s: Num | None = Field(default=None, gt=0.0, le=HARD_MAX_WIDTH_S)


class LimitsSpec(SafetyLimits):
    """`SafetyLimits` as written in a protocol file: strict, finite, under hard ceilings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_set_v: Num = Field(default=3.0, gt=0.0, le=HARD_MAX_V)
    max_reset_v: Num = Field(default=3.0, gt=0.0, le=HARD_MAX_V)
    max_width_s: Num = Field(default=1e-3, gt=0.0, le=HARD_MAX_WIDTH_S)
    compliance_a: Num = Field(default=1e-3, gt=0.0, le=HARD_MAX_COMPLIANCE_A)
    max_pulses_per_device_per_update: int = Field(default=64, ge=1, le=HARD_MAX_PULSES_PER_UPDATE)
    max_pulses_per_device_per_run: int = Field(default=10_000_000, ge=1, le=HARD_MAX_PULSES_PER_RUN)
    max_energy_per_update_j: Num = Field(default=1e-3, gt=0.0, le=HARD_MAX_ENERGY_J)
    max_half_select_v: Num | None = Field(default=None, gt=0.0, le=HARD_MAX_V)

    def safety_limits(self) -> SafetyLimits:
        """The plain `SafetyLimits` (for code that compares models by type)."""
        return SafetyLimits(**self.model_dump())


# --- programming schemes -------------------------------------------------------------------


class ManhattanScheme(Strict):
    """Sign only: one pulse where |dG| exceeds a threshold, of the sign of dG."""

    kind: Literal["manhattan"]
    threshold_s: Num = Field(default=0.0, ge=0.0, le=1.0, description="absolute |dG| threshold")
    threshold_steps: Num = Field(
        default=0.0, ge=0.0, le=1e6, description="threshold in expected one-pulse steps"
    )
    bias: BiasScheme = "none"


class ProportionalScheme(Strict):
    """Pulse count |dG| / expected step (or the model inverse), rounded, capped."""

    kind: Literal["proportional"]
    count: Literal["step", "inverse"] = "step"
    rounding: Literal["stochastic", "nearest"] = "stochastic"
    max_pulses: int = Field(default=16, ge=1, le=HARD_MAX_PULSES_PER_UPDATE)
    bias: BiasScheme = "none"


class WriteVerifyScheme(Strict):
    """Closed loop: read, pulse, read until within tolerance; ISPP amplitude steps."""

    kind: Literal["write_verify"]
    tolerance_frac: Num = Field(default=0.02, gt=0.0, le=0.5, description="of G_max - G_min")
    tolerance_s: Num | None = Field(default=None, gt=0.0, le=1.0, description="absolute, S")
    max_iterations: int = Field(default=100, ge=1, le=100_000)
    v_step_v: Num = Field(default=0.05, ge=0.0, le=HARD_MAX_V, description="ISPP amplitude step")
    width_step_s: Num = Field(default=0.0, ge=0.0, le=HARD_MAX_WIDTH_S)
    max_ispp_steps: int = Field(default=10, ge=0, le=10_000)
    pulses_per_iteration: Literal["single", "model"] = "model"
    max_pulses_per_iteration: int = Field(default=8, ge=1, le=HARD_MAX_PULSES_PER_UPDATE)


class OuterProductScheme(Strict):
    """Row/column-parallel phases realising a rank-1 or rank-2 update under V/2 or V/3."""

    kind: Literal["outer_product"]
    bias: Literal["v2", "v3"] = "v2"
    rank: Literal[1, 2] = 1
    max_pulses: int = Field(default=16, ge=1, le=HARD_MAX_PULSES_PER_UPDATE)


Scheme = Annotated[
    ManhattanScheme | ProportionalScheme | WriteVerifyScheme | OuterProductScheme,
    Field(discriminator="kind"),
]


# --- characterisation and acceptance -------------------------------------------------------


class Range(Strict):
    """An accepted interval; either end may be open."""

    min: Num | None = None
    max: Num | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:.4g}"
        hi = "inf" if self.max is None else f"{self.max:.4g}"
        return f"[{lo}, {hi}]"


class AcceptanceSpec(Strict):
    """Expected ranges of the characterisation metrics; a metric left out is not judged."""

    g_min_s: Range | None = None
    g_max_s: Range | None = None
    on_off: Range | None = None
    states_ltp: Range | None = None
    states_ltd: Range | None = None
    distinguishable_states: Range | None = None
    nl_ltp: Range | None = None
    nl_ltd: Range | None = None
    asymmetry: Range | None = None
    c2c_sigma: Range | None = None
    read_noise: Range | None = None
    d2d_sigma_g_min: Range | None = None
    d2d_sigma_g_max: Range | None = None
    d2d_sigma_nl_ltp: Range | None = None
    d2d_sigma_nl_ltd: Range | None = None
    stuck_fraction: Range | None = None

    def judged(self) -> dict[str, Range]:
        return {name: rng for name, rng in self if isinstance(rng, Range)}


#: The coordinate in which a device's state moves by (near) affine steps: conductance for
#: NeuroSim-type and soft-bounds devices, resistance for drift/threshold (VTEAM-type) devices.
StateKind = Literal["conductance", "resistance"]


class CharacterizeSpec(Strict):
    """The pulse-train experiment: C cycles of n SET then n RESET pulses, read after each."""

    pulses_per_phase: int = Field(default=128, ge=2, le=100_000)
    cycles: int = Field(default=5, ge=1, le=10_000)
    devices: int = Field(default=16, ge=1, le=1_000_000)
    repeat_reads: int = Field(default=8, ge=2, le=1024, description="reads at each phase end")
    state: StateKind = "conductance"


class ProtocolFile(Strict):
    """A complete pulse protocol: what to send, how to read, what never to send, what to expect."""

    version: Literal[1]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = Field(default="", max_length=2000)
    preset: str | None = Field(
        default=None,
        max_length=64,
        description="the simulator preset this protocol is written for (default of --preset)",
    )
    pulses: PulsePair
    read: ReadSpec = Field(default_factory=ReadSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    scheme: Scheme
    characterize: CharacterizeSpec = Field(default_factory=CharacterizeSpec)
    acceptance: AcceptanceSpec = Field(default_factory=AcceptanceSpec)

    @model_validator(mode="after")
    def _consistent(self) -> ProtocolFile:
        check_consistent(self.pulses, self.read.voltage_v, self.limits, self.scheme)
        return self


def scheme_bias(scheme: Scheme) -> BiasScheme:
    """How a scheme biases the lines it does not select (write-verify: never)."""
    return "none" if isinstance(scheme, WriteVerifyScheme) else scheme.bias


def check_consistent(pulses: PulsePair, read_v: float, lim: SafetyLimits, scheme: Scheme) -> None:
    """ValueError unless pulses, read voltage and scheme fit the limits `lim`.

    The rules of a protocol file, applied as well to every combination a run assembles (a
    run config's scheme or limits on a protocol's pulses): nominal pulses within the
    limits, the read below both programming amplitudes, scheme pulse caps within the
    per-update budget, the highest ISPP amplitude and width within the limits, and the
    half-select voltage of the scheme's bias within `max_half_select_v`.
    """
    for name in ("set", "reset"):
        pulse: Pulse = getattr(pulses, name)
        cap = lim.max_set_v if name == "set" else lim.max_reset_v
        cap_name = "max_set_v" if name == "set" else "max_reset_v"
        if abs(pulse.amplitude_v) > cap:
            raise ValueError(
                f"pulses.{name}.amplitude_v = {pulse.amplitude_v:g} V: |amplitude| exceeds "
                f"limits.{cap_name} = {cap:g} V"
            )
        if pulse.width_s > lim.max_width_s:
            raise ValueError(
                f"pulses.{name}.width_s = {pulse.width_s:g} s exceeds "
                f"limits.max_width_s = {lim.max_width_s:g} s"
            )
    smallest = min(pulses.set.amplitude_v, -pulses.reset.amplitude_v)
    if read_v >= smallest:
        raise ValueError(
            f"read.voltage_v = {read_v:g} V must be below the smallest "
            f"programming amplitude ({smallest:g} V)"
        )
    per_update = lim.max_pulses_per_device_per_update
    if isinstance(scheme, ProportionalScheme | OuterProductScheme) and (
        scheme.max_pulses > per_update
    ):
        raise ValueError(
            f"scheme.max_pulses = {scheme.max_pulses} exceeds "
            f"limits.max_pulses_per_device_per_update = {per_update}"
        )
    if isinstance(scheme, WriteVerifyScheme):
        if scheme.max_pulses_per_iteration > per_update:
            raise ValueError(
                f"scheme.max_pulses_per_iteration = {scheme.max_pulses_per_iteration} exceeds "
                f"limits.max_pulses_per_device_per_update = {per_update}"
            )
        top_set, top_reset, top_width = ispp_top(pulses, scheme)
        if top_set > lim.max_set_v or top_reset > lim.max_reset_v:
            raise ValueError(
                f"scheme ISPP reaches {top_set:g} V SET / {top_reset:g} V RESET "
                f"(amplitude + max_ispp_steps * v_step_v), over limits.max_set_v = "
                f"{lim.max_set_v:g} V / limits.max_reset_v = {lim.max_reset_v:g} V"
            )
        if top_width > lim.max_width_s:
            raise ValueError(
                f"scheme ISPP reaches width {top_width:g} s (width + max_ispp_steps * "
                f"width_step_s), over limits.max_width_s = {lim.max_width_s:g} s"
            )
    bias = scheme_bias(scheme)
    if lim.max_half_select_v is not None:
        divisor = {"none": 0.0, "v2": 2.0, "v3": 3.0}[bias]
        if divisor:
            biggest = max(pulses.set.amplitude_v, -pulses.reset.amplitude_v)
            if biggest / divisor > lim.max_half_select_v:
                raise ValueError(
                    f"scheme.bias = {bias} puts {biggest / divisor:g} V on "
                    f"half-selected devices, over limits.max_half_select_v = "
                    f"{lim.max_half_select_v:g} V"
                )


def ispp_top(pulses: PulsePair, scheme: WriteVerifyScheme) -> tuple[float, float, float]:
    """The highest SET amplitude, |RESET| amplitude and width a write-verify scheme asks for
    (the nominal pulse climbed by every ISPP step)."""
    steps = scheme.max_ispp_steps
    return (
        pulses.set.amplitude_v + steps * scheme.v_step_v,
        -pulses.reset.amplitude_v + steps * scheme.v_step_v,
        max(pulses.set.width_s, pulses.reset.width_s) + steps * scheme.width_step_s,
    )
