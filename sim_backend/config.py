"""Configuration models of a simulated device: the response model and each nonideality.

Every nonideality is its own small validated model, off (zero) by default, so a preset states
exactly which effects it turns on and a user can override one field without touching the rest.
All fractions of "range" are of the device's own normalised state range [0, 1], i.e. of
G_max - G_min for the NeuroSim and soft-bounds models and of the state variable for VTEAM.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols.plan import PulseShape
from protocols.response import _NL_MAX
from sim_backend.overrides import apply_overrides

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class NeuroSimModel(BaseModel):
    """NeuroSim LTP/LTD curves (Chen, Peng & Yu, IEEE TCAD 2018): the pulse-count response."""

    model_config = _FROZEN

    kind: Literal["neurosim"] = "neurosim"
    g_min_s: float = Field(gt=0.0)
    g_max_s: float = Field(gt=0.0)
    states_ltp: float = Field(ge=2.0, description="nominal SET pulses from G_min to G_max")
    states_ltd: float = Field(ge=2.0, description="nominal RESET pulses from G_max to G_min")
    nl_ltp: float = Field(ge=-_NL_MAX, le=_NL_MAX, description="NeuroSim NL label of LTP")
    nl_ltd: float = Field(ge=-_NL_MAX, le=_NL_MAX, description="NeuroSim NL label of LTD")

    @model_validator(mode="after")
    def _range(self) -> NeuroSimModel:
        if not self.g_max_s > self.g_min_s:
            raise ValueError(f"g_max_s ({self.g_max_s:g}) must exceed g_min_s ({self.g_min_s:g})")
        return self


class SoftBoundsModel(BaseModel):
    """Soft bounds: a SET step of `step_up * (1 - x)`, a RESET step of `step_down * x`.

    With x = (G - G_min) / (G_max - G_min); the linear-step limit is a NeuroSim model with NL 0.
    """

    model_config = _FROZEN

    kind: Literal["soft_bounds"] = "soft_bounds"
    g_min_s: float = Field(gt=0.0)
    g_max_s: float = Field(gt=0.0)
    step_up: float = Field(gt=0.0, lt=1.0, description="SET step at G_min, fraction of range")
    step_down: float = Field(gt=0.0, lt=1.0, description="RESET step at G_max, fraction of range")

    @model_validator(mode="after")
    def _range(self) -> SoftBoundsModel:
        if not self.g_max_s > self.g_min_s:
            raise ValueError(f"g_max_s ({self.g_max_s:g}) must exceed g_min_s ({self.g_min_s:g})")
        return self


class VteamModel(BaseModel):
    """VTEAM-type threshold model (Kvatinsky et al., IEEE TCAS-II 2015) with a linear R(w).

    State w in [0, 1]; R(w) = R_off - (R_off - R_on) * w, so SET (V > v_set) raises G.
    dw/dt = k_set * (V / v_set - 1)^alpha_set * F(w) for V > v_set, the mirror image for
    V < -v_reset, and 0 in between (reads and half-selects below threshold do nothing).
    F = 1 ("none", clipped at the bounds) or the soft window F = 1 - w (SET), w (RESET).
    """

    model_config = _FROZEN

    kind: Literal["vteam"] = "vteam"
    r_on_ohm: float = Field(gt=0.0)
    r_off_ohm: float = Field(gt=0.0)
    k_set_per_s: float = Field(gt=0.0, description="state rate at V = 2 v_set, 1/s")
    k_reset_per_s: float = Field(gt=0.0, description="state rate at V = -2 v_reset, 1/s")
    v_set_v: float = Field(gt=0.0, description="SET threshold, V")
    v_reset_v: float = Field(gt=0.0, description="RESET threshold magnitude, V")
    alpha_set: float = Field(gt=0.0)
    alpha_reset: float = Field(gt=0.0)
    window: Literal["none", "soft"] = "none"

    @model_validator(mode="after")
    def _range(self) -> VteamModel:
        if not self.r_off_ohm > self.r_on_ohm:
            raise ValueError(
                f"r_off_ohm ({self.r_off_ohm:g}) must exceed r_on_ohm ({self.r_on_ohm:g})"
            )
        return self

    @property
    def g_min_s(self) -> float:
        return 1.0 / self.r_off_ohm

    @property
    def g_max_s(self) -> float:
        return 1.0 / self.r_on_ohm


DeviceModel = Annotated[NeuroSimModel | SoftBoundsModel | VteamModel, Field(discriminator="kind")]


class PulseLaw(BaseModel):
    """How a pulse other than the nominal one scales the step (NeuroSim and soft-bounds models).

    A pulse of amplitude V and width t counts as m nominal pulses along the response curve:
    "threshold": m = (t / t_nom) * ((|V| - V_th) / (|V_nom| - V_th))^gamma for |V| > V_th, else 0
    (a hard threshold, like VTEAM: reads and V/2 or V/3 half-selects below V_th do nothing);
    "exponential": m = (t / t_nom) * exp((|V| - |V_nom|) / v_slope) (a soft threshold, like
    Yakopcic's model: every half-select disturbs a little). VTEAM presets ignore this law.
    """

    model_config = _FROZEN

    kind: Literal["threshold", "exponential"] = "threshold"
    v_threshold_set_v: float = Field(default=1.0, gt=0.0)
    v_threshold_reset_v: float = Field(default=1.0, gt=0.0, description="magnitude")
    gamma: float = Field(default=1.0, gt=0.0, description="overdrive exponent (threshold law)")
    v_slope_v: float = Field(default=0.1, gt=0.0, description="e-fold voltage (exponential)")


class DeviceToDevice(BaseModel):
    """Device-to-device spread, drawn once per device (normal, truncated at +-3 sigma)."""

    model_config = _FROZEN

    nl_sigma: float = Field(default=0.0, ge=0.0, description="absolute sigma of the NL labels")
    states_rel_sigma: float = Field(default=0.0, ge=0.0, le=0.33, description="of states/steps")
    g_min_rel_sigma: float = Field(default=0.0, ge=0.0, le=0.33, description="of G_min (R_off)")
    g_max_rel_sigma: float = Field(default=0.0, ge=0.0, le=0.33, description="of G_max (R_on)")
    v_threshold_rel_sigma: float = Field(default=0.0, ge=0.0, le=0.33, description="VTEAM only")


class CycleToCycle(BaseModel):
    """Cycle-to-cycle write noise: N(0, sigma^2) per pulse, sigma * sqrt(n) for n pulses.

    `sampling="exact"` (default) draws fresh deviates for every plan. "buffered" serves them
    from a pre-drawn Gaussian buffer at a random offset and sign per use (redrawn every
    `buffer_reuse` uses): a few ns per device cheaper, but the noise field of one plan
    reappears, shifted to other devices, in the plans that share the buffer.
    """

    model_config = _FROZEN

    sigma: float = Field(default=0.0, ge=0.0, lt=0.5, description="fraction of range per pulse")
    sampling: Literal["buffered", "exact"] = "exact"
    buffer_reuse: int = Field(default=64, ge=1)


class Readout(BaseModel):
    """Read noise and converters: I = V * G * (1 + N(0, read_sigma)) per device and read."""

    model_config = _FROZEN

    read_sigma: float = Field(default=0.0, ge=0.0, lt=1.0)
    adc_bits: int | None = Field(default=None, ge=1, le=24)
    dac_bits: int | None = Field(default=None, ge=1, le=24)
    adc_full_scale_a: float | None = Field(
        default=None, gt=0.0, description="ADC range +-I_fs; None: n_in * max|v| * G_max"
    )
    format: Literal["float64", "float32_resistance", "float32_current"] = Field(
        default="float64",
        description="how an instrument reports a read: float64 (exact), float32 resistance "
        "1/G (ArC ONE), float32 current G * format_read_v (ArC TWO); the simulator rounds its "
        "reads the same way so that a run on an emulated instrument can be compared exactly",
    )
    format_read_v: float = Field(
        default=0.2, gt=0.0, le=12.0, description="read voltage of format float32_current, V"
    )


class Faults(BaseModel):
    """Stuck-at faults: a device pinned at G_min (stuck-at-0) or G_max (stuck-at-1)."""

    model_config = _FROZEN

    stuck_min_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    stuck_max_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _total(self) -> Faults:
        if self.stuck_min_rate + self.stuck_max_rate > 1.0:
            raise ValueError("stuck_min_rate + stuck_max_rate must not exceed 1")
        return self


class Drift(BaseModel):
    """Retention drift over elapsed time t since a device was last programmed.

    Power law G(t) = G_p * ((t + t0) / t0)^(-nu) (per-device nu ~ N(nu, nu_sigma)), clipped at
    G_min; plus relaxation, a random walk in the normalised state whose variance grows as
    relax_sigma^2 * log10(1 + t / t0).
    """

    model_config = _FROZEN

    nu: float = Field(default=0.0, ge=0.0, lt=1.0)
    nu_sigma: float = Field(default=0.0, ge=0.0)
    t0_s: float = Field(default=1.0, gt=0.0)
    relax_sigma: float = Field(default=0.0, ge=0.0, lt=0.5)

    @property
    def enabled(self) -> bool:
        return self.nu > 0.0 or self.nu_sigma > 0.0 or self.relax_sigma > 0.0


class Endurance(BaseModel):
    """Switching wears out: full steps up to `degrade_after` pulses, then the step (and its
    noise) shrinks linearly to zero at `fail_after`, after which the device no longer moves."""

    model_config = _FROZEN

    degrade_after: int | None = Field(default=None, ge=0)
    fail_after: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _order(self) -> Endurance:
        if (self.degrade_after is None) != (self.fail_after is None):
            raise ValueError("set both degrade_after and fail_after, or neither")
        if (
            self.degrade_after is not None
            and self.fail_after is not None
            and self.fail_after <= self.degrade_after
        ):
            raise ValueError(
                f"fail_after ({self.fail_after}) must exceed degrade_after ({self.degrade_after})"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.fail_after is not None


class Disturb(BaseModel):
    """Half-select disturb of a passive array under the plan's V/2 or V/3 bias scheme."""

    model_config = _FROZEN

    enabled: bool = True


InitialState = Literal["min", "max", "mid"] | Annotated[float, Field(ge=0.0, le=1.0)]


class DeviceConfig(BaseModel):
    """A complete simulated device: response model, nominal pulses and nonidealities."""

    model_config = _FROZEN

    name: str = "custom"
    description: str = ""
    source: str = ""
    uncertain: tuple[str, ...] = Field(default=(), description="values not checked at source")
    model: DeviceModel
    set_pulse: PulseShape
    reset_pulse: PulseShape
    law: PulseLaw = PulseLaw()
    d2d: DeviceToDevice = DeviceToDevice()
    c2c: CycleToCycle = CycleToCycle()
    readout: Readout = Readout()
    faults: Faults = Faults()
    drift: Drift = Drift()
    endurance: Endurance = Endurance()
    disturb: Disturb = Disturb()
    levels: int | None = Field(default=None, ge=2, description="finite conductance levels")
    initial: InitialState = Field(
        default="min", description="initial state: G_min, G_max, mid-range or a fraction"
    )

    @field_validator("set_pulse")
    @classmethod
    def _set_positive(cls, value: PulseShape) -> PulseShape:
        if value.amplitude_v <= 0:
            raise ValueError(f"set_pulse needs a positive amplitude, got {value.amplitude_v:g} V")
        return value

    @field_validator("reset_pulse")
    @classmethod
    def _reset_negative(cls, value: PulseShape) -> PulseShape:
        if value.amplitude_v >= 0:
            raise ValueError(f"reset_pulse needs a negative amplitude, got {value.amplitude_v:g} V")
        return value

    @model_validator(mode="after")
    def _pulses_above_threshold(self) -> DeviceConfig:
        if abs(self.set_pulse.amplitude_v) <= self.threshold_set_v:
            raise ValueError(
                f"set_pulse amplitude {self.set_pulse.amplitude_v:g} V is not above the SET "
                f"threshold {self.threshold_set_v:g} V"
            )
        if abs(self.reset_pulse.amplitude_v) <= self.threshold_reset_v:
            raise ValueError(
                f"reset_pulse amplitude {self.reset_pulse.amplitude_v:g} V is not above the "
                f"RESET threshold {self.threshold_reset_v:g} V"
            )
        return self

    # -- derived ----------------------------------------------------------------------------
    @property
    def g_min_s(self) -> float:
        return float(self.model.g_min_s)

    @property
    def g_max_s(self) -> float:
        return float(self.model.g_max_s)

    @property
    def threshold_set_v(self) -> float:
        """SET switching threshold (V): below it a positive pulse does nothing."""
        if isinstance(self.model, VteamModel):
            return self.model.v_set_v
        if self.law.kind == "exponential":
            return 0.0
        return self.law.v_threshold_set_v

    @property
    def threshold_reset_v(self) -> float:
        """RESET switching threshold magnitude (V)."""
        if isinstance(self.model, VteamModel):
            return self.model.v_reset_v
        if self.law.kind == "exponential":
            return 0.0
        return self.law.v_threshold_reset_v

    def with_overrides(self, **overrides: Any) -> DeviceConfig:
        """A copy with fields replaced; nested models merge (`c2c={"sigma": 0.01}`) and
        `c2c__sigma=0.01` is the same thing."""
        return apply_overrides(self, overrides)

    def digest(self) -> str:
        """Stable hash of the physics (not the labels), to match snapshots to their device."""
        data = self.model_dump(mode="json", exclude={"name", "description", "source", "uncertain"})
        if self.readout.format == "float64":  # digests from before the read formats existed
            for key in ("format", "format_read_v"):
                data["readout"].pop(key)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
