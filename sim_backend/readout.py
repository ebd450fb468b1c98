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


def reported(g: F64, cfg: Readout) -> F64:
    """Conductances as an instrument reporting in `cfg.format` hands them back.

    float32_resistance: the instrument sends 1/G as a float32 (ArC ONE), the host takes
    1/R in float64. float32_current: it sends the read current G * V as a float32 (ArC
    TWO), the host divides by V in float64. The emulators encode their replies with these
    same expressions, so a simulated run and a run on an emulator see identical reads.
    """
    if cfg.format == "float32_resistance":
        return 1.0 / resistance_f32(g).astype(np.float64)
    if cfg.format == "float32_current":
        v = cfg.format_read_v
        return np.abs(current_f32(g, v).astype(np.float64)) / v
    return g


def resistance_f32(g: F64) -> NDArray[np.float32]:
    """The float32 resistance an ArC ONE reports for conductances g."""
    return (1.0 / np.asarray(g, dtype=np.float64)).astype(np.float32)


def current_f32(g: F64, read_v: float) -> NDArray[np.float32]:
    """The float32 read current an ArC TWO reports for conductances g at `read_v`."""
    return (np.asarray(g, dtype=np.float64) * read_v).astype(np.float32)


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
