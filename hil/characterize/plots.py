"""Figures of a characterisation run (matplotlib, Agg backend, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hil.characterize.characterization import Characterization, Traces

#: Devices drawn individually in the trace figure (all of them go into the histograms).
MAX_TRACE_DEVICES = 8


def plot_traces(traces: Traces, result: Characterization, path: Path) -> Path:
    """G vs pulse number, every cycle of the first few devices, with the fitted mean curve."""
    cycles, n1, k = traces.ltp.shape
    n = n1 - 1
    top = float(np.nanmax(traces.ltp))
    scale, unit = (1e9, "nS") if top < 1e-6 else (1e6, "uS")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colours = plt.get_cmap("tab10")
    shown = min(k, MAX_TRACE_DEVICES)
    x_ltp = np.arange(n + 1)
    x_ltd = n + np.arange(n + 1)
    for d in range(shown):
        for c in range(cycles):
            label = f"device {d}" if c == 0 else None
            ax.plot(
                x_ltp,
                traces.ltp[c, :, d] * scale,
                color=colours(d % 10),
                lw=0.6,
                alpha=0.6,
                label=label,
            )
            ax.plot(x_ltd, traces.ltd[c, :, d] * scale, color=colours(d % 10), lw=0.6, alpha=0.6)
    resp = result.response
    if resp is not None:
        up = resp.after_pulses(np.full(n + 1, resp.g_min_s), np.arange(n + 1, dtype=float))
        down = resp.after_pulses(np.full(n + 1, float(up[-1])), -np.arange(n + 1, dtype=float))
        ax.plot(x_ltp, up * scale, color="black", lw=2.0, label="fitted mean model")
        ax.plot(x_ltd, down * scale, color="black", lw=2.0)
    ax.axvline(n, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"pulse number ({n} SET, then {n} RESET; {cycles} cycles overlaid)")
    ax.set_ylabel(f"conductance ({unit})")
    ax.set_title(f"Pulse trains, {shown} of {k} devices")
    ax.legend(fontsize=7, ncol=3, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histograms(result: Characterization, path: Path) -> Path:
    """Device-to-device spread of the per-device fits."""
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.5))
    g_all = [
        float(v)
        for key in ("g_min_s", "g_max_s")
        for v in result.per_device.get(key, [])
        if v is not None and np.isfinite(v)
    ]
    top = max((abs(v) for v in g_all), default=1.0)
    g_scale, g_unit = (1e9, "nS") if top < 1e-6 else ((1e6, "µS") if top < 1e-3 else (1.0, "S"))
    panels = [
        ("g_min_s", f"G_min ({g_unit})", g_scale),
        ("g_max_s", f"G_max ({g_unit})", g_scale),
        ("nl_ltp", "NL LTP", 1.0),
        ("nl_ltd", "NL LTD", 1.0),
        ("states_ltp", "states LTP", 1.0),
        ("c2c_sigma_ltp", "C2C sigma LTP (of range)", 1.0),
    ]
    for ax, (key, label, scale) in zip(axes.ravel(), panels, strict=True):
        vals = np.array([v for v in result.per_device.get(key, []) if v is not None], dtype=float)
        vals = vals[np.isfinite(vals)] * scale
        if vals.size:
            lo, hi = float(vals.min()), float(vals.max())
            if hi - lo <= 1e-9 * max(abs(lo), abs(hi), 1e-300):
                # one value (or none apart): matplotlib would span +-0.5 around it
                half = 0.05 * abs(lo) if lo != 0.0 else 0.5
                lo, hi = lo - half, hi + half
            bins = min(20, max(5, vals.size // 3))
            ax.hist(vals, bins=bins, range=(lo, hi), color="tab:blue", alpha=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("devices")
    fig.suptitle("Device-to-device spread")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
