"""Reading an array: per-device read noise and the converters of the analog product."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim_backend.config import Readout

F64 = NDArray[np.float64]


def noisy_conductance(g: F64, sigma: float, rng: np.random.Generator) -> F64:
    """A read of conductances g with relative noise: G * (1 + N(0, sigma))."""
    if sigma == 0.0:
        return g
    return g * (1.0 + sigma * rng.standard_normal(g.shape))


def quantise(values: F64, bits: int, full_scale: float) -> F64:
    """Uniform mid-tread quantiser over [-full_scale, full_scale], saturating outside."""
    levels = 2 ** (bits - 1) - 1 if bits > 1 else 1
    step = full_scale / levels
    return np.clip(np.round(values / step), -levels, levels) * step


def analog_product(
    v: F64, g: F64, cfg: Readout, g_max_nominal: float, rng: np.random.Generator
) -> F64:
    """Currents v @ g of a batch v (B, n_in) through conductances g (n_in, n_out).

    Per-device read noise I = V G (1 + N(0, s)) summed on a line is Gaussian with variance
    s^2 * sum(V^2 G^2), so it is drawn per output current, not per device.
    """
    if cfg.dac_bits is not None:
        v_fs = float(np.max(np.abs(v))) or 1.0
        v = quantise(v, cfg.dac_bits, v_fs)
    current = v @ g
    if cfg.read_sigma > 0.0:
        spread = np.sqrt((v * v) @ (g * g))
        current = current + cfg.read_sigma * spread * rng.standard_normal(current.shape)
    if cfg.adc_bits is not None:
        if cfg.adc_full_scale_a is not None:
            i_fs = cfg.adc_full_scale_a
        else:
            i_fs = g.shape[0] * float(np.max(np.abs(v)) or 1.0) * g_max_nominal
        current = quantise(current, cfg.adc_bits, i_fs)
    return current
