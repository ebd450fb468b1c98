"""Device models, vectorised over the array, reduced to one exact update rule.

Every model here moves a normalised state x in [0, 1] by n identical pulses as

    x' = clip(x + (x - x_inf) * expm1(n * lam), 0, 1)

with a per-device asymptote x_inf and per-device, per-pulse-shape rate lam:
- NeuroSim curve: G = G_min + (G_max - G_min) f_a(p), f_a(p) = (1 - e^{-p/a}) / (1 - e^{-1/a}).
  Advancing p by n/P_max is exactly x' = x_inf + (x - x_inf) e^{-n/(a P_max)} with
  x_inf = 1 / (1 - e^{-1/a}): no log or inverse is needed, and a < 0 (convex) works alike.
- Soft bounds: x_inf = 1 (SET) or 0 (RESET), lam = log(1 - step).
- VTEAM, no window: a constant state step per pulse, written as the same rule with a distant
  asymptote (|x_inf| = 1e6, relative error 1e-6); VTEAM, soft window: x_inf = 1 or 0.
Written with expm1 the rule keeps full relative precision in float32 even when the curve is
nearly linear (x_inf ~ 1e6), which is what lets the hot path run in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from protocols.plan import PulseShape
from protocols.response import _NL_MAX, nl_to_a
from sim_backend.config import DeviceConfig, NeuroSimModel, SoftBoundsModel, VteamModel

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

#: Asymptote distance that turns the saturating rule into a constant step.
LINEAR_ASYMPTOTE = 1.0e6
#: D2D draws are truncated at this many sigma (keeps parameters physical and thresholds sane).
TRUNCATE_SIGMA = 3.0
#: Per-device NL labels are kept inside this fraction of the NL table's range.
_NL_CLIP = 0.9 * _NL_MAX


def truncated_normal(rng: np.random.Generator, n: int) -> F64:
    """Standard normal deviates clipped at +-TRUNCATE_SIGMA (one per device)."""
    return np.clip(rng.standard_normal(n), -TRUNCATE_SIGMA, TRUNCATE_SIGMA)


@dataclass
class DeviceArrays:
    """Per-device constants drawn once (device-to-device variation included)."""

    g_map: str  # "linear": G = lo + span * x;  "resistive": G = 1 / (lo - span * x)
    lo: F64
    span: F64
    xinf_set: F32
    xinf_reset: F32
    # NeuroSim / soft bounds: rate of one nominal pulse; VTEAM: per-device rate constants.
    lam_set: F32
    lam_reset: F32
    v_th_set: F64 | None = None
    v_th_reset: F64 | None = None

    def conductance(self, x: NDArray[np.floating]) -> F64:
        """Conductance (S) of normalised states x (flat, all devices)."""
        xs = np.asarray(x, dtype=np.float64)
        if self.g_map == "linear":
            return self.lo + self.span * xs
        return 1.0 / (self.lo - self.span * xs)

    def state_of(self, g: F64) -> F64:
        """Normalised state of conductances g (inverse of `conductance`), clipped to [0, 1]."""
        x = (g - self.lo) / self.span if self.g_map == "linear" else (self.lo - 1.0 / g) / self.span
        return np.clip(x, 0.0, 1.0)

    @property
    def g_low(self) -> F64:
        return self.conductance(np.zeros(self.lo.shape))

    @property
    def g_high(self) -> F64:
        return self.conductance(np.ones(self.lo.shape))


def _bounds(cfg: DeviceConfig, rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    d2d = cfg.d2d
    g_min = cfg.g_min_s * (1.0 + d2d.g_min_rel_sigma * truncated_normal(rng, n))
    g_max = cfg.g_max_s * (1.0 + d2d.g_max_rel_sigma * truncated_normal(rng, n))
    # Keep at least a 5 % window on every device.
    g_max = np.maximum(g_max, 1.05 * g_min)
    return g_min, g_max


def _neurosim_direction(a: F64, states: F64) -> tuple[F64, F64]:
    """(x_inf, lam) of one NeuroSim direction in its own rising coordinate."""
    xinf = -1.0 / np.expm1(-1.0 / a)
    lam = -1.0 / (a * states)
    return xinf, lam


#: Smallest distance of a convex LTD curve's asymptote from G_max (in units of the window).
#: The float32 state cannot hold x closer to 1 than ~6e-8, so a curve whose asymptote is
#: closer would never leave G_max.
CONVEX_LTD_FLOOR = 2.0**-22


def _floor_convex_ltd(xinf: F64, lam: F64, states: F64) -> tuple[F64, F64]:
    """Keep convex LTD curves (x_inf < 0 in y = 1 - x) representable near G_max.

    A curve with |x_inf| below the floor is replaced by the one with |x_inf| = floor that
    still reaches G_min after the same number of pulses: y(p) = c (e^{lam p} - 1), y(P) = 1.
    Only extremely convex LTD (|NL| above ~7.7) is affected.
    """
    small = (xinf < 0.0) & (-xinf < CONVEX_LTD_FLOOR)
    if not small.any():
        return xinf, lam
    xinf = np.where(small, -CONVEX_LTD_FLOOR, xinf)
    lam = np.where(small, np.log1p(1.0 / CONVEX_LTD_FLOOR) / states, lam)
    return xinf, lam


def build_devices(cfg: DeviceConfig, n: int, rng: np.random.Generator) -> DeviceArrays:
    """Draw the per-device constants of `n` devices from `cfg` (D2D variation included)."""
    d2d = cfg.d2d
    model = cfg.model
    g_min, g_max = _bounds(cfg, rng, n)
    if isinstance(model, NeuroSimModel):
        p_ltp = model.states_ltp * (1.0 + d2d.states_rel_sigma * truncated_normal(rng, n))
        p_ltd = model.states_ltd * (1.0 + d2d.states_rel_sigma * truncated_normal(rng, n))
        nl_ltp = np.clip(
            model.nl_ltp + d2d.nl_sigma * truncated_normal(rng, n), -_NL_CLIP, _NL_CLIP
        )
        nl_ltd = np.clip(
            model.nl_ltd + d2d.nl_sigma * truncated_normal(rng, n), -_NL_CLIP, _NL_CLIP
        )
        xinf_up, lam_up = _neurosim_direction(nl_to_a(nl_ltp), p_ltp)
        # NeuroSim labels saturating LTD with a negative NL; LTD rises in y = 1 - x.
        xinf_dn, lam_dn = _neurosim_direction(nl_to_a(-nl_ltd), p_ltd)
        xinf_dn, lam_dn = _floor_convex_ltd(xinf_dn, lam_dn, p_ltd)
        return DeviceArrays(
            g_map="linear",
            lo=g_min,
            span=g_max - g_min,
            xinf_set=xinf_up.astype(np.float32),
            xinf_reset=(1.0 - xinf_dn).astype(np.float32),
            lam_set=lam_up.astype(np.float32),
            lam_reset=lam_dn.astype(np.float32),
        )
    if isinstance(model, SoftBoundsModel):
        if d2d.up_down_sigma is None:  # independent spreads of the two steps
            f_up = 1.0 + d2d.states_rel_sigma * truncated_normal(rng, n)
            f_dn = 1.0 + d2d.states_rel_sigma * truncated_normal(rng, n)
        else:  # aihwkit's form: one step factor, split by an up/down asymmetry u
            common = 1.0 + d2d.states_rel_sigma * truncated_normal(rng, n)
            u = d2d.up_down_sigma * truncated_normal(rng, n)
            f_up, f_dn = common * (1.0 + u), common * (1.0 - u)
        up = np.clip(model.step_up * f_up, 1e-9, 0.99)
        dn = np.clip(model.step_down * f_dn, 1e-9, 0.99)
        return DeviceArrays(
            g_map="linear",
            lo=g_min,
            span=g_max - g_min,
            xinf_set=np.ones(n, dtype=np.float32),
            xinf_reset=np.zeros(n, dtype=np.float32),
            lam_set=np.log1p(-up).astype(np.float32),
            lam_reset=np.log1p(-dn).astype(np.float32),
        )
    assert isinstance(model, VteamModel)
    k_set = model.k_set_per_s * (1.0 + d2d.states_rel_sigma * truncated_normal(rng, n))
    k_reset = model.k_reset_per_s * (1.0 + d2d.states_rel_sigma * truncated_normal(rng, n))
    v_set = model.v_set_v * (1.0 + d2d.v_threshold_rel_sigma * truncated_normal(rng, n))
    v_reset = model.v_reset_v * (1.0 + d2d.v_threshold_rel_sigma * truncated_normal(rng, n))
    r_off = 1.0 / g_min
    r_on = 1.0 / g_max
    if model.window == "none":
        xinf_set = np.full(n, -LINEAR_ASYMPTOTE, dtype=np.float32)
        xinf_reset = np.full(n, 1.0 + LINEAR_ASYMPTOTE, dtype=np.float32)
    else:
        xinf_set = np.ones(n, dtype=np.float32)
        xinf_reset = np.zeros(n, dtype=np.float32)
    return DeviceArrays(
        g_map="resistive",
        lo=r_off,
        span=r_off - r_on,
        xinf_set=xinf_set,
        xinf_reset=xinf_reset,
        lam_set=k_set.astype(np.float32),
        lam_reset=k_reset.astype(np.float32),
        v_th_set=v_set,
        v_th_reset=v_reset,
    )


def law_multiplier(cfg: DeviceConfig, amplitude_v: float, width_s: float) -> float:
    """How many nominal pulses one (amplitude, width) pulse is worth (NeuroSim, soft bounds)."""
    nominal = cfg.set_pulse if amplitude_v > 0 else cfg.reset_pulse
    v_nom = abs(nominal.amplitude_v)
    v = abs(amplitude_v)
    law = cfg.law
    width = width_s / nominal.width_s
    if law.kind == "exponential":
        return float(width * np.exp((v - v_nom) / law.v_slope_v))
    v_th = law.v_threshold_set_v if amplitude_v > 0 else law.v_threshold_reset_v
    if v <= v_th:
        return 0.0
    return float(width * ((v - v_th) / (v_nom - v_th)) ** law.gamma)


@dataclass
class ShapeTerms:
    """What one pulse of a given shape does to each device: x' = x + (x - xinf) expm1(n lam)."""

    lam: F32
    xinf: F32
    gate: F32 | None  # 1 where the pulse is above the device's threshold; None: everywhere


def shape_terms(
    cfg: DeviceConfig, dev: DeviceArrays, amplitude_v: float, width_s: float
) -> ShapeTerms | None:
    """Per-device update terms of one pulse shape; None when it moves no device at all."""
    positive = amplitude_v > 0
    xinf = dev.xinf_set if positive else dev.xinf_reset
    model = cfg.model
    if not isinstance(model, VteamModel):
        m = law_multiplier(cfg, amplitude_v, width_s)
        if m == 0.0:
            return None
        base = dev.lam_set if positive else dev.lam_reset
        return ShapeTerms(lam=(base * np.float32(m)).astype(np.float32), xinf=xinf, gate=None)
    v_th = dev.v_th_set if positive else dev.v_th_reset
    k = dev.lam_set if positive else dev.lam_reset
    alpha = model.alpha_set if positive else model.alpha_reset
    assert v_th is not None
    overdrive = np.maximum(abs(amplitude_v) / v_th - 1.0, 0.0)
    above = overdrive > 0.0
    if not above.any():
        return None
    dw = k.astype(np.float64) * overdrive**alpha * width_s  # state moved by one pulse (no window)
    lam = np.log1p(dw / LINEAR_ASYMPTOTE) if model.window == "none" else -dw
    gate = None if above.all() else above.astype(np.float32)
    return ShapeTerms(lam=lam.astype(np.float32), xinf=xinf, gate=gate)


def nominal_terms(cfg: DeviceConfig, dev: DeviceArrays, shape: PulseShape) -> ShapeTerms | None:
    return shape_terms(cfg, dev, shape.amplitude_v, shape.width_s)
