"""Time and wear: retention drift after programming, and endurance loss with use."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim_backend.config import Drift, Endurance
from sim_backend.devices import DeviceArrays, truncated_normal


def endurance_factor(cfg: Endurance, pulses_so_far: NDArray[np.int64]) -> NDArray[np.float32]:
    """Step scale per device: 1 before `degrade_after` pulses, falling to 0 at `fail_after`."""
    assert cfg.degrade_after is not None and cfg.fail_after is not None
    remaining = (cfg.fail_after - pulses_so_far.astype(np.float64)) / (
        cfg.fail_after - cfg.degrade_after
    )
    return np.clip(remaining, 0.0, 1.0).astype(np.float32)


def drift_exponents(cfg: Drift, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Per-device power-law drift exponent nu (never negative)."""
    return np.maximum(cfg.nu + cfg.nu_sigma * truncated_normal(rng, n), 0.0)


def apply_drift(
    cfg: Drift,
    dev: DeviceArrays,
    x: NDArray[np.float32],
    age_s: NDArray[np.float64],
    nu: NDArray[np.float64],
    dt_s: float,
    rng: np.random.Generator,
) -> None:
    """Let every device age by `dt_s` seconds in place (x: normalised state, age_s: time since
    each device was last programmed, both updated)."""
    t0 = cfg.t0_s
    before = age_s + t0
    after = before + dt_s
    if np.any(nu > 0.0):
        g = dev.conductance(x)
        g = np.maximum(g * (after / before) ** (-nu), dev.g_low)
        x[:] = dev.state_of(g)
    if cfg.relax_sigma > 0.0:
        # Variance relax_sigma^2 * log10(1 + t / t0), accumulated over the interval.
        var = cfg.relax_sigma**2 * (np.log10(after / t0) - np.log10(before / t0))
        x += (np.sqrt(var) * rng.standard_normal(x.size)).astype(np.float32)
        np.clip(x, 0.0, 1.0, out=x)
    age_s += dt_s
