"""Simulated memristor crossbar with device nonidealities (the embedded default backend).

Usage::

    from sim_backend import SimulatedCrossbar, get_preset, PRESETS

    xbar = SimulatedCrossbar(64, 64, preset="taox_hfox", seed=1, c2c={"sigma": 0.01})
    preset = get_preset("taox_hfox")
    preset.set_pulse, preset.reset_pulse, preset.threshold_set_v, preset.response()
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
]
