"""The mean NeuroSim response of a device configuration (exact or fitted).

A NeuroSim-curve device returns its own curve. Other models (soft bounds, VTEAM) are traced
without variation or noise under their nominal pulses, and a NeuroSim curve is fitted to each
direction: the state count is the number of pulses that covers 99 % of the conductance window
(soft bounds never reach the bound), and the NL label minimises the squared error of the
normalised trace. The result is an approximation for planning, not the device itself.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

from protocols.response import NeuroSimResponse, curve, nl_to_a
from sim_backend.config import DeviceConfig, NeuroSimModel
from sim_backend.devices import build_devices, shape_terms

_MAX_TRACE = 200_000
_COVER = 0.99
_NL_BOUND = 9.0


def _trace(cfg: DeviceConfig, polarity: int) -> NDArray[np.float64]:
    """Normalised conductance (0 at G_min, 1 at G_max) after k = 0, 1, ... nominal pulses."""
    plain = cfg.model_copy(update={"d2d": type(cfg.d2d)()})
    dev = build_devices(plain, 1, np.random.default_rng(0))
    shape = cfg.set_pulse if polarity > 0 else cfg.reset_pulse
    terms = shape_terms(plain, dev, shape.amplitude_v, shape.width_s)
    assert terms is not None
    k = np.arange(_MAX_TRACE + 1, dtype=np.float64)
    x0 = 0.0 if polarity > 0 else 1.0
    lam = float(terms.lam[0])
    xinf = float(terms.xinf[0])
    x = np.clip(x0 + (x0 - xinf) * np.expm1(k * lam), 0.0, 1.0)
    g = dev.conductance(x)
    g_lo, g_hi = float(dev.g_low[0]), float(dev.g_high[0])
    return (g - g_lo) / (g_hi - g_lo)


def _fit_direction(rise: NDArray[np.float64], sign: float) -> tuple[int, float]:
    """(states, NL label) of a rising normalised trace; sign -1 for LTD's label convention."""
    reached = np.flatnonzero(rise >= _COVER)
    states = int(reached[0]) if reached.size else rise.size - 1
    states = max(states, 2)
    p = np.arange(states + 1) / states
    target = rise[: states + 1] / rise[states]

    def loss(label: float) -> float:
        a = nl_to_a(sign * label)
        return float(np.sum((curve(p, a) - target) ** 2))

    best = minimize_scalar(loss, bounds=(-_NL_BOUND, _NL_BOUND), method="bounded")
    return states, float(best.x)


@functools.lru_cache(maxsize=64)
def mean_response(cfg: DeviceConfig) -> NeuroSimResponse:
    """The NeuroSim response a planner should assume for `cfg` (fitted unless NeuroSim).

    Cached: configurations are frozen and the response is immutable."""
    model = cfg.model
    if isinstance(model, NeuroSimModel):
        return NeuroSimResponse(
            g_min_s=model.g_min_s,
            g_max_s=model.g_max_s,
            states_ltp=max(2, round(model.states_ltp)),
            states_ltd=max(2, round(model.states_ltd)),
            nl_ltp=model.nl_ltp,
            nl_ltd=model.nl_ltd,
        )
    states_ltp, nl_ltp = _fit_direction(_trace(cfg, +1), 1.0)
    states_ltd, nl_ltd = _fit_direction(1.0 - _trace(cfg, -1), -1.0)
    return NeuroSimResponse(
        g_min_s=cfg.g_min_s,
        g_max_s=cfg.g_max_s,
        states_ltp=states_ltp,
        states_ltd=states_ltd,
        nl_ltp=nl_ltp,
        nl_ltd=nl_ltd,
    )


def _measurable_direction(states: float, label: float, sign: float) -> tuple[int, float]:
    """(states, label) of one NeuroSim direction as a pulse-train measurement resolves it.

    A curve that covers 99 % of its window long before its last pulse moves by less than 1 %
    over the remaining pulses, which no noisy measurement can place: its state count is the
    pulses to 99 % and its label that of the curve up to there (the convention of the fits
    above and of `characterize`). Curves reaching 99 % within the last 10 % of their pulses
    keep their nominal values.
    """
    n = max(2, round(states))
    rise = curve(np.arange(n + 1) / n, nl_to_a(sign * label))
    k99 = int(np.argmax(rise >= _COVER))
    if k99 >= n - max(3, 0.1 * k99):
        return n, label
    return _fit_direction(rise, sign)


@functools.lru_cache(maxsize=64)
def measurable_response(cfg: DeviceConfig) -> NeuroSimResponse:
    """The NeuroSim response `characterize` (and `mrnn-hil devices fit`) should recover from a
    noiseless-on-average measurement of `cfg`: `mean_response`, with strongly saturating
    NeuroSim curves replaced by their resolvable part (`_measurable_direction`)."""
    resp = mean_response(cfg)
    if not isinstance(cfg.model, NeuroSimModel):
        return resp
    states_ltp, nl_ltp = _measurable_direction(cfg.model.states_ltp, cfg.model.nl_ltp, 1.0)
    states_ltd, nl_ltd = _measurable_direction(cfg.model.states_ltd, cfg.model.nl_ltd, -1.0)
    return resp.model_copy(
        update={
            "states_ltp": states_ltp,
            "states_ltd": states_ltd,
            "nl_ltp": nl_ltp,
            "nl_ltd": nl_ltd,
        }
    )
