"""Device response models: the expected conductance after n identical pulses.

The planner needs to know how far one pulse moves a device at its present conductance; the
simulator needs the same curve to move its devices; `characterize` fits it to measurements.
The NeuroSim form (Chen, Peng & Yu, IEEE TCAD 37(12):3067, 2018) is used throughout:

    LTP:  G(p) = G_min + (G_max - G_min) * f_a(p),      p = P / P_max in [0, 1]
    LTD:  G(q) = G_max - (G_max - G_min) * f_a'(q),     q = Q / Q_max (pulses from G_max)
    f_a(p) = (1 - exp(-p / a)) / (1 - exp(-1 / a))

with a = A / P_max set by the nonlinearity label NL through NeuroSim's own mapping
(`getParamA` in NeuroSim's formula.cpp, a 900-entry table for NL = 0.01 ... 9.00). That table is
the closed form NL = (10 / sqrt(0.98)) * max_p (f_a(p) - p): the largest deviation of the curve
from a linear ramp, in units of 10 % of the range, times 1/sqrt(0.98) = 1.0102. This module
evaluates the closed form, which reproduces every table entry checked to its six printed digits
(tests/test_response.py); between entries it is smooth where NeuroSim truncates the label to
0.01, below 0.01 it continues to the linear curve (NeuroSim clamps to its 0.01 entry) and above
9 it extends the same definition up to ~9.8 (NeuroSim clamps to 9). NL = 0 is linear.
Sign convention (NeuroSim's labels): a positive LTP label and a negative LTD label both mean
the usual saturating curve, steps shrinking as the device nears the bound it moves toward.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

Array = NDArray[np.float64]

#: a = A/P_max above this is treated as linear (|NL| < ~1.3e-6).
_A_LINEAR = 1e6
#: NeuroSim's label scale: NL = NL_SCALE * max_p (f_a(p) - p) (fits its table to 6 digits).
NL_SCALE = 10.0 / float(np.sqrt(0.98))


def _max_deviation(a: Array) -> Array:
    """max_p (f_a(p) - p) for a > 0, in closed form: f_a'(p) = 1 at p* = -a ln(a (1 - e^{-1/a}))."""
    den = -np.expm1(-1.0 / a)
    p_star = np.clip(-a * np.log(a * den), 0.0, 1.0)
    return -np.expm1(-p_star / a) / den - p_star


def _nl_of_a_positive(a: Array) -> Array:
    return NL_SCALE * _max_deviation(a)


# |NL| is monotone decreasing in a > 0; tabulate log|NL| against log a densely once and invert
# by interpolation (log-log is nearly linear at both ends; the inverse is within 2e-7 of the
# closed form).
_LOG_A = np.linspace(np.log(0.005), np.log(_A_LINEAR), 20001)
_LOG_NL = np.log(_nl_of_a_positive(np.exp(_LOG_A)))
_NL_MAX = float(np.exp(_LOG_NL[0]))
_NL_MIN = float(np.exp(_LOG_NL[-1]))


def nl_to_a(nl: ArrayLike) -> Array:
    """Signed curvature a = A/P_max for a nonlinearity label (vectorised).

    Positive NL gives a > 0 (concave, saturating); negative NL gives a < 0 (convex).
    |NL| below ~1.3e-6 maps to the (numerically) linear curve a = 1e6.
    """
    nl_arr = np.asarray(nl, dtype=np.float64)
    if not np.all(np.isfinite(nl_arr)):
        raise ValueError("NL must be finite")
    mag = np.abs(nl_arr)
    if np.any(mag > _NL_MAX):
        raise ValueError(f"|NL| must be <= {_NL_MAX:.2f}, got {float(mag.max()):g}")
    # interp needs increasing x: log|NL| decreases with log a, so flip both.
    log_nl = np.log(np.maximum(mag, _NL_MIN))
    a = np.exp(np.interp(log_nl, _LOG_NL[::-1], _LOG_A[::-1]))
    return np.where(nl_arr < 0, -a, a)


def a_to_nl(a: ArrayLike) -> Array:
    """Inverse of `nl_to_a`: the NL label of a signed curvature a = A/P_max."""
    a_arr = np.asarray(a, dtype=np.float64)
    mag = np.clip(np.abs(a_arr), np.exp(_LOG_A[0]), _A_LINEAR)
    nl = _nl_of_a_positive(mag)
    return np.where(a_arr < 0, -nl, nl)


def curve(p: ArrayLike, a: ArrayLike) -> Array:
    """f_a(p): normalised conductance after a normalised pulse number p (vectorised)."""
    p_arr = np.asarray(p, dtype=np.float64)
    a_arr = np.asarray(a, dtype=np.float64)
    return np.expm1(-p_arr / a_arr) / np.expm1(-1.0 / a_arr)


def curve_inverse(g: ArrayLike, a: ArrayLike) -> Array:
    """p such that f_a(p) = g, for g in [0, 1] (vectorised)."""
    g_arr = np.clip(np.asarray(g, dtype=np.float64), 0.0, 1.0)
    a_arr = np.asarray(a, dtype=np.float64)
    return -a_arr * np.log1p(g_arr * np.expm1(-1.0 / a_arr))


class NeuroSimResponse(BaseModel):
    """Mean pulse response of a device: the NeuroSim LTP/LTD curves, one per polarity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["neurosim"] = "neurosim"
    g_min_s: float = Field(gt=0.0)
    g_max_s: float = Field(gt=0.0)
    states_ltp: int = Field(ge=2, description="SET pulses from G_min to G_max")
    states_ltd: int = Field(ge=2, description="RESET pulses from G_max to G_min")
    nl_ltp: float = Field(ge=-_NL_MAX, le=_NL_MAX)
    nl_ltd: float = Field(ge=-_NL_MAX, le=_NL_MAX)

    @model_validator(mode="after")
    def _range(self) -> NeuroSimResponse:
        if not self.g_max_s > self.g_min_s:
            raise ValueError(f"g_max_s ({self.g_max_s:g}) must exceed g_min_s ({self.g_min_s:g})")
        return self

    @cached_property
    def a_ltp(self) -> float:
        return float(nl_to_a(self.nl_ltp))

    @cached_property
    def a_ltd(self) -> float:
        # NeuroSim labels saturating LTD with a negative NL.
        return float(nl_to_a(-self.nl_ltd))

    @property
    def on_off(self) -> float:
        return self.g_max_s / self.g_min_s

    @cached_property
    def _den_ltp(self) -> float:
        return float(np.expm1(-1.0 / self.a_ltp))

    @cached_property
    def _den_ltd(self) -> float:
        return float(np.expm1(-1.0 / self.a_ltd))

    def _norm(self, g: ArrayLike) -> Array:
        x = np.array(g, dtype=np.float64, copy=True)  # a 0-d array for a scalar, never a scalar
        x -= self.g_min_s
        x /= self.g_max_s - self.g_min_s
        return np.clip(x, 0.0, 1.0, out=x)

    def _denorm(self, x: Array) -> Array:
        out = np.clip(x, 0.0, 1.0)
        out *= self.g_max_s - self.g_min_s
        out += self.g_min_s
        return out

    def after_pulses(self, g: ArrayLike, n: ArrayLike) -> Array:
        """Expected conductance after n pulses: n > 0 SET (LTP), n < 0 RESET (LTD).

        Each curve is evaluated only on the devices it applies to (a plan group has a single
        polarity), gathered by index; x is already in [0, 1], so the curve inverse needs no
        clip. The arithmetic is that of `curve` and `curve_inverse`, element for element.
        """
        x = self._norm(g)
        n_arr = np.asarray(n, dtype=np.float64)
        if n_arr.shape != x.shape:
            n_arr = np.broadcast_to(n_arr, x.shape)
        xf = x.reshape(-1)
        nf = n_arr.reshape(-1)
        out = xf.copy()
        up = np.flatnonzero(nf > 0)
        if up.size:
            p = np.log1p(xf[up] * self._den_ltp)
            p *= -self.a_ltp
            p += nf[up] / self.states_ltp
            np.minimum(p, 1.0, out=p)
            out[up] = np.expm1(-p / self.a_ltp) / self._den_ltp
        down = np.flatnonzero(nf < 0)
        if down.size:
            q = np.log1p((1.0 - xf[down]) * self._den_ltd)
            q *= -self.a_ltd
            q -= nf[down] / self.states_ltd
            np.minimum(q, 1.0, out=q)
            out[down] = 1.0 - np.expm1(-q / self.a_ltd) / self._den_ltd
        return self._denorm(out.reshape(x.shape))

    def step(self, g: ArrayLike, polarity: int) -> Array:
        """Expected |dG| of one pulse of the given polarity (+1 SET, -1 RESET) at g."""
        g_arr = np.asarray(g, dtype=np.float64)
        return np.abs(self.after_pulses(g_arr, np.full(g_arr.shape, float(polarity))) - g_arr)

    def pulses_between(self, g: ArrayLike, g_target: ArrayLike) -> Array:
        """Real-valued signed pulse count that moves g to g_target on the mean curve."""
        x = self._norm(g)
        xt = self._norm(g_target)
        up = (curve_inverse(xt, self.a_ltp) - curve_inverse(x, self.a_ltp)) * self.states_ltp
        down = (
            curve_inverse(1.0 - xt, self.a_ltd) - curve_inverse(1.0 - x, self.a_ltd)
        ) * self.states_ltd
        return np.where(xt >= x, up, -down)


#: The union of response models; more kinds join it as a discriminated union on `kind`.
DeviceResponse = NeuroSimResponse
