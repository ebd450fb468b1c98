"""A device preset from measured pulse trains: `mrnn-hil devices fit TRACES.csv`.

The traces (hil/characterize/raw_traces.py) go through the same extraction as `characterize`
(`characterization.extract`): G_min and G_max where the devices clip, the NeuroSim NL label
and state count of each direction from the conditional mean step, C2C noise with read noise
removed (read noise from repeated reads of unchanged devices), D2D spreads from per-device
fits. The result is a `DeviceConfig` with a NeuroSim-curve model, the measured pulses and
noise, and a `sources` entry for every number, written as a preset file.

What the fit promises (`TOLERANCES`, the same as characterize's in docs/protocols.md), for
traces of a simulated preset measured by its library protocol: NL within 0.3 (|NL| < 1.5) or
20 %, on/off and G_min, G_max within 10 %, C2C within 25 %, state counts within 25 % (as the
library's acceptance ranges), against `sim_backend.fit.measurable_response` (the resolvable
part of strongly saturating curves). The state count is the loosest: a pooled fit over
devices whose steps differ (soft_bounds: 30 % step spread over 16 devices) lands up to ~25 %
from the nominal device's count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hil.characterize.characterization import Characterization, extract
from hil.characterize.raw_traces import TraceData
from protocols.errors import InputError
from protocols.plan import PulseShape
from protocols.spec import StateKind
from sim_backend.config import (
    CycleToCycle,
    DeviceConfig,
    DeviceToDevice,
    NeuroSimModel,
    PulseLaw,
    Readout,
)
from sim_backend.presets import THRESHOLD_FRACTION

#: Relative tolerances the fit promises (NL: absolute below |NL| 1.5, relative above).
TOLERANCES: dict[str, float] = {
    "nl_abs": 0.3,
    "nl_rel": 0.2,
    "on_off": 0.10,
    "g_min_s": 0.10,
    "g_max_s": 0.10,
    "c2c": 0.25,
    "states": 0.25,
}


def nl_within(measured: float, reference: float) -> bool:
    """True when an NL label is within the promised tolerance of its reference."""
    tol = TOLERANCES["nl_abs"] if abs(reference) < 1.5 else TOLERANCES["nl_rel"] * abs(reference)
    return abs(measured - reference) <= tol


@dataclass
class DeviceFit:
    """The fitted preset, the extraction behind it and the summary `devices fit` prints."""

    config: DeviceConfig
    result: Characterization
    summary: dict[str, Any]


def _finite(value: float, default: float = 0.0) -> float:
    return value if math.isfinite(value) else default


def _sigma(value: float, cap: float) -> float:
    """A measured spread as a config field: NaN (unmeasurable) -> 0, capped at the field's max."""
    return float(min(max(_finite(value), 0.0), cap))


def fit_device(
    data: TraceData,
    *,
    name: str,
    origin: str,
    threshold_set_v: float | None = None,
    threshold_reset_v: float | None = None,
    state: StateKind = "conductance",
) -> DeviceFit:
    """Fit a NeuroSim-curve preset to traces read from `origin` (a file name, for sources)."""
    result = extract(data.traces, state)
    resp = result.response
    m = result.metrics
    if resp is None:
        raise InputError(
            f"{origin}: no response could be fitted (the trains never reach 99 % of the "
            "window, or the steps stall); measure longer trains"
        )
    set_p, reset_p = data.pulses.set, data.pulses.reset
    v_th_set = threshold_set_v or round(THRESHOLD_FRACTION * set_p.amplitude_v, 6)
    v_th_reset = threshold_reset_v or round(THRESHOLD_FRACTION * abs(reset_p.amplitude_v), 6)
    for value, pulse, kind in ((v_th_set, set_p, "SET"), (v_th_reset, reset_p, "RESET")):
        if not 0 < value < abs(pulse.amplitude_v):
            raise InputError(
                f"--threshold-{kind.lower()} {value:g} V: must lie between 0 and the measured "
                f"{kind} amplitude {abs(pulse.amplitude_v):g} V"
            )
    k, cycles = len(data.devices), data.traces.ltp.shape[0]
    measured = f"measured: mrnn-hil devices fit {origin} ({k} devices, {cycles} cycles)"
    read_sigma = m["read_noise"] if data.has_repeats else 0.0
    nl_spread = [v for v in (m["d2d_sigma_nl_ltp"], m["d2d_sigma_nl_ltd"]) if math.isfinite(v)]
    thresholds_source = (
        "given to devices fit"
        if threshold_set_v and threshold_reset_v
        else f"not measured: {THRESHOLD_FRACTION} x |measured amplitude| (chosen) where not given"
    )
    uncertain = [
        "D2D NL sigma includes each device's own fit noise (an upper bound)",
        "switching thresholds are not measured by pulse trains",
    ]
    if not data.has_repeats:
        uncertain.append("no repeated reads: read noise not separated from C2C noise")
    config = DeviceConfig(
        name=name,
        description=f"fitted to {origin}",
        source=measured,
        sources={
            "g_window": measured,
            "states": measured,
            "nl": measured,
            "set_pulse": f"the SET trains of {origin}",
            "reset_pulse": f"the RESET trains of {origin}",
            "thresholds": thresholds_source,
            "c2c": measured + (" (read noise removed)" if data.has_repeats else ""),
            "d2d": measured,
            "read_noise": measured if data.has_repeats else "not measured (no repeated reads)",
        },
        uncertain=tuple(uncertain),
        model=NeuroSimModel(
            g_min_s=resp.g_min_s,
            g_max_s=resp.g_max_s,
            states_ltp=resp.states_ltp,
            states_ltd=resp.states_ltd,
            nl_ltp=resp.nl_ltp,
            nl_ltd=resp.nl_ltd,
        ),
        set_pulse=PulseShape(amplitude_v=set_p.amplitude_v, width_s=set_p.width_s),
        reset_pulse=PulseShape(amplitude_v=reset_p.amplitude_v, width_s=reset_p.width_s),
        law=PulseLaw(
            kind="threshold",
            v_threshold_set_v=v_th_set,
            v_threshold_reset_v=v_th_reset,
            gamma=1.0,
        ),
        d2d=DeviceToDevice(
            nl_sigma=float(np.mean(nl_spread)) if nl_spread else 0.0,
            g_min_rel_sigma=_sigma(m["d2d_sigma_g_min"], 0.33),
            g_max_rel_sigma=_sigma(m["d2d_sigma_g_max"], 0.33),
        ),
        c2c=CycleToCycle(sigma=_sigma(m["c2c_sigma"], 0.49)),
        readout=Readout(read_sigma=_sigma(read_sigma, 0.99)),
    )

    def clean(value: float) -> float | None:
        return float(value) if math.isfinite(value) else None

    summary: dict[str, Any] = {
        "g_min_s": resp.g_min_s,
        "g_max_s": resp.g_max_s,
        "on_off": resp.on_off,
        "states": resp.states_ltp,
        "states_ltp": resp.states_ltp,
        "states_ltd": resp.states_ltd,
        "nl_ltp": resp.nl_ltp,
        "nl_ltd": resp.nl_ltd,
        "c2c": config.c2c.sigma,
        "read_noise": clean(read_sigma) if data.has_repeats else None,
        "d2d_sigma_nl": config.d2d.nl_sigma,
        "d2d_sigma_g_min": clean(m["d2d_sigma_g_min"]),
        "d2d_sigma_g_max": clean(m["d2d_sigma_g_max"]),
        "set_pulse": {"amplitude_v": set_p.amplitude_v, "width_s": set_p.width_s},
        "reset_pulse": {"amplitude_v": reset_p.amplitude_v, "width_s": reset_p.width_s},
        "devices": k,
        "cycles": cycles,
        "reads": data.rows_read,
        "stuck_devices": [data.devices[i] for i in result.stuck],
    }
    return DeviceFit(config=config, result=result, summary=summary)


def plot_fit(data: TraceData, fit: DeviceFit, path: Path) -> Path:
    """Measured trains against the fitted mean curve, one panel per direction: the median read
    per pulse count (all devices and cycles), its 10-90 % band, and the fitted curve."""
    resp = fit.result.response
    assert resp is not None
    g_top = max(float(np.nanmax(data.traces.ltp)), float(np.nanmax(data.traces.ltd)))
    scale, unit = (1e9, "nS") if g_top < 1e-6 else (1e6, "uS")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    panels = (
        (axes[0], data.traces.ltp, +1, "SET (potentiation)", resp.g_min_s),
        (axes[1], data.traces.ltd, -1, "RESET (depression)", resp.g_max_s),
    )
    for ax, trains, sign, title, start in panels:
        flat = np.moveaxis(trains, 1, 0).reshape(trains.shape[1], -1)  # (pulse, cycle x dev.)
        x = np.arange(trains.shape[1])
        ok = np.isfinite(flat).any(axis=1)
        with np.errstate(all="ignore"):
            lo, med, hi = (np.nanpercentile(flat[ok], q, axis=1) for q in (10, 50, 90))
        ax.fill_between(x[ok], lo * scale, hi * scale, color="tab:blue", alpha=0.2, lw=0)
        ax.plot(x[ok], med * scale, color="tab:blue", lw=1.2, label="measured: median, 10-90 %")
        model = resp.after_pulses(np.full(x.shape, start), sign * x.astype(np.float64))
        ax.plot(x, model * scale, color="black", lw=2.0, label="fitted NeuroSim curve")
        ax.set_title(title)
        ax.set_xlabel("pulses in the train")
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel(f"conductance ({unit})")
    s = fit.summary
    fig.suptitle(
        f"{fit.config.name}: NL {s['nl_ltp']:.2f} / {s['nl_ltd']:.2f}, states "
        f"{s['states_ltp']} / {s['states_ltd']}, C2C {100 * s['c2c']:.2f} % "
        f"({s['devices']} devices x {s['cycles']} cycles)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
