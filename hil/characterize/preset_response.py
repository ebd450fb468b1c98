"""A simulator preset's pulse response, drawn: full SET then RESET trains on a few devices.

The devices are a 1 x k simulated crossbar of the preset (device-to-device spread,
cycle-to-cycle noise, nonlinearity as configured), pulsed one nominal pulse at a time from
their initial state down to the bottom of the range and then up and down again; the mean
NeuroSim response that the planner assumes is drawn on top. Read noise is left out so the
traces show what the pulses do.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from protocols.plan import PulseGroup, PulsePlan, PulseShape


def pulse_traces(preset: str, devices: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Conductances after every pulse of a SET train then a RESET train, per device."""
    from sim_backend import SimulatedCrossbar, get_preset, mean_response

    cfg = get_preset(preset)
    resp = mean_response(cfg)
    n_set = round(resp.states_ltp * 1.25)
    n_reset = round(resp.states_ltd * 1.25)
    xbar = SimulatedCrossbar(1, devices, preset=preset, seed=seed, readout__read_sigma=0.0)
    ones = np.ones((1, devices), dtype=np.int64)

    def train(amplitude: float, width: float, count: int) -> np.ndarray:
        plan = PulsePlan.from_groups(
            (1, devices), [PulseGroup(PulseShape(amplitude_v=amplitude, width_s=width), ones)]
        )
        out = np.empty((count, devices))
        for k in range(count):
            xbar.apply(plan)
            out[k] = xbar.read()[0]
        return out

    with xbar:
        # start at the bottom of the range: RESET until the devices stop moving
        train(cfg.reset_pulse.amplitude_v, cfg.reset_pulse.width_s, n_reset)
        start = xbar.read()[0]
        up = train(cfg.set_pulse.amplitude_v, cfg.set_pulse.width_s, n_set)
        down = train(cfg.reset_pulse.amplitude_v, cfg.reset_pulse.width_s, n_reset)
    return {"start": start, "set": up, "reset": down}


def plot_preset_response(preset: str, path: Path, devices: int = 8, seed: int = 0) -> Path:
    """PNG of the preset's pulse response: sampled devices and the planner's mean model."""
    from sim_backend import get_preset, mean_response

    cfg = get_preset(preset)
    resp = mean_response(cfg)
    tr = pulse_traces(preset, devices, seed)
    trace = np.vstack([tr["start"][None, :], tr["set"], tr["reset"]])
    n_set = tr["set"].shape[0]
    top = float(np.max(trace))
    scale, unit = (1e9, "nS") if top < 1e-6 else ((1e6, "µS") if top < 1e-3 else (1e3, "mS"))
    x = np.arange(trace.shape[0])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for d in range(trace.shape[1]):
        ax.plot(
            x, trace[:, d] * scale, lw=0.7, alpha=0.7, label="sampled devices" if d == 0 else None
        )
    k_up = np.arange(n_set + 1, dtype=float)
    up = resp.after_pulses(np.full(k_up.size, resp.g_min_s), k_up)
    k_down = np.arange(tr["reset"].shape[0] + 1, dtype=float)
    down = resp.after_pulses(np.full(k_down.size, float(up[-1])), -k_down)
    ax.plot(k_up, up * scale, color="black", lw=2.0, label="mean model (planner)")
    ax.plot(n_set + k_down, down * scale, color="black", lw=2.0)
    ax.axvline(n_set, color="grey", ls="--", lw=0.8)
    for g in (cfg.g_min_s, cfg.g_max_s):
        ax.axhline(g * scale, color="grey", ls=":", lw=0.8)
    sp, rp = cfg.set_pulse, cfg.reset_pulse
    ax.set_xlabel(
        f"pulse number ({n_set} SET {sp.amplitude_v:g} V / {sp.width_s:.3g} s, then "
        f"{tr['reset'].shape[0]} RESET {rp.amplitude_v:g} V / {rp.width_s:.3g} s)"
    )
    ax.set_ylabel(f"conductance ({unit})")
    ax.set_title(
        f"preset {preset}: {resp.states_ltp}/{resp.states_ltd} states, NL "
        f"{resp.nl_ltp:.2g}/{resp.nl_ltd:.2g}, C2C {100 * cfg.c2c.sigma:.3g} %"
    )
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path
