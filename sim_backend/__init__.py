"""Simulated memristor crossbar with device nonidealities (the embedded default backend).

Usage::

    from sim_backend import SimulatedCrossbar, get_preset, PRESETS

    xbar = SimulatedCrossbar(64, 64, preset="taox_hfox", seed=1, c2c={"sigma": 0.01})
    xbar.apply(plan); xbar.read(); xbar.mvm(v); state = xbar.snapshot(); xbar.restore(state)
    xbar.pulse_counts, xbar.energy_j, xbar.last_plan_energy_j, xbar.elapse(3600.0)

    preset = get_preset("taox_hfox")                # a DeviceConfig (frozen pydantic model)
    preset.set_pulse, preset.reset_pulse            # nominal PulseShape of SET and RESET
    preset.threshold_set_v, preset.threshold_reset_v
    mean_response(preset)                           # protocols.response.NeuroSimResponse

Models, formulas, presets and their sources: docs/devices.md.
"""

from sim_backend.config import (
    CycleToCycle,
    DeviceConfig,
    DeviceToDevice,
    Disturb,
    Drift,
    Endurance,
    Faults,
    NeuroSimModel,
    PulseLaw,
    Readout,
    SoftBoundsModel,
    VteamModel,
)
from sim_backend.crossbar import SimulatedCrossbar, default_limits
from sim_backend.fit import mean_response
from sim_backend.presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "CycleToCycle",
    "DeviceConfig",
    "DeviceToDevice",
    "Disturb",
    "Drift",
    "Endurance",
    "Faults",
    "NeuroSimModel",
    "PulseLaw",
    "Readout",
    "SimulatedCrossbar",
    "SoftBoundsModel",
    "VteamModel",
    "default_limits",
    "get_preset",
    "mean_response",
]
