"""How well `characterize` recovers each simulator preset, over several seeds.

For every shipped protocol (one per preset) and seed, runs the characterisation on the
simulator and compares NL (LTP, LTD), state counts, on/off and C2C sigma with the preset
(reference: `sim_backend.fit.measurable_response`, the resolvable part of curves that
saturate long before their last pulse, the simulator's own fit for non-NeuroSim models).
Baseline, measured in the same run on the same readings: the naive fit of a NeuroSim curve
to the average trace, which cycle-to-cycle noise and clipping at the bounds pull away from
the device's curve.

Usage: python bench/characterize_recovery.py [--seeds 5] [--presets ...]
Prints a Markdown table; last line: one JSON object with every number.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.characterize.characterization import characterize, device_grid
from protocols.protocol_file import library_dir, load_protocol
from protocols.response import curve, nl_to_a
from sim_backend.crossbar import SimulatedCrossbar
from sim_backend.fit import measurable_response
from sim_backend.presets import PRESETS


def naive_label(traces: np.ndarray, sign: float) -> float:
    """Baseline: NeuroSim label fitted to the mean trace (all devices and cycles)."""
    mean = traces.mean(axis=(0, 2))
    rise = (
        (mean - mean[0]) / (mean.max() - mean.min())
        if sign > 0
        else ((mean[0] - mean) / (mean.max() - mean.min()))
    )
    k99 = int(np.argmax(rise >= 0.99 * rise.max()))
    k99 = max(k99, 2)
    q = np.arange(k99 + 1) / k99
    target = rise[: k99 + 1] / rise[k99]

    def loss(x: float) -> float:
        return float(np.sum((curve(q, nl_to_a(sign * x)) - target) ** 2))

    return float(minimize_scalar(loss, bounds=(-9.0, 9.0), method="bounded").x)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--presets", nargs="*", default=sorted(PRESETS))
    args = parser.parse_args()
    rows = []
    for name in args.presets:
        protocol = load_protocol(library_dir() / f"{name}.yaml")
        cfg = PRESETS[name]
        ref = measurable_response(cfg)
        nl_ltp, nl_ltd = ref.nl_ltp, ref.nl_ltd
        on_off, c2c = cfg.g_max_s / cfg.g_min_s, cfg.c2c.sigma
        k = protocol.characterize.devices
        for seed in range(args.seeds):
            r, c = device_grid(k)
            t0 = time.process_time()
            with SimulatedCrossbar(r, c, preset=name, seed=seed, limits=protocol.limits) as arr:
                traces, result = characterize(arr, protocol)
            cpu = time.process_time() - t0
            m = result.metrics
            rows.append(
                {
                    "preset": name,
                    "seed": seed,
                    "nl_ltp_ref": nl_ltp,
                    "nl_ltd_ref": nl_ltd,
                    "nl_ltp": m["nl_ltp"],
                    "nl_ltd": m["nl_ltd"],
                    "naive_nl_ltp": naive_label(traces.ltp, 1.0),
                    "naive_nl_ltd": naive_label(traces.ltd, -1.0),
                    "states_ltp_ref": ref.states_ltp,
                    "states_ltd_ref": ref.states_ltd,
                    "states_ltp": m["states_ltp"],
                    "states_ltd": m["states_ltd"],
                    "on_off_ref": on_off,
                    "on_off": m["on_off"],
                    "c2c_ref": c2c,
                    "c2c": m["c2c_sigma"],
                    "passed": result.passed,
                    "cpu_s": cpu,
                }
            )
    print(
        "| preset | NL LTP ref / measured (naive) | NL LTD ref / measured (naive) "
        "| states LTP/LTD ref, err | on/off err | C2C err | acceptance | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.presets:
        sel = [x for x in rows if x["preset"] == name]

        def span(key: str, sel: list[dict[str, float]] = sel) -> str:
            vals = [x[key] for x in sel]
            return f"{min(vals):.2f}..{max(vals):.2f}"

        onoff = max(abs(x["on_off"] / x["on_off_ref"] - 1) for x in sel)
        c2c = (
            max(abs(x["c2c"] / x["c2c_ref"] - 1) for x in sel)
            if sel[0]["c2c_ref"] > 0
            else max(x["c2c"] for x in sel)
        )
        passed = sum(bool(x["passed"]) for x in sel)
        st = [
            max(abs(x[f"states_{d}"] / x[f"states_{d}_ref"] - 1) for x in sel)
            for d in ("ltp", "ltd")
        ]
        states = (
            f"{sel[0]['states_ltp_ref']}/{sel[0]['states_ltd_ref']}, "
            f"{100 * st[0]:.0f} %/{100 * st[1]:.0f} %"
        )
        cpu = float(np.mean([x["cpu_s"] for x in sel]))
        print(
            f"| {name} | {sel[0]['nl_ltp_ref']:.2f} / {span('nl_ltp')} ({span('naive_nl_ltp')}) "
            f"| {sel[0]['nl_ltd_ref']:.2f} / {span('nl_ltd')} ({span('naive_nl_ltd')}) "
            f"| {states} | {100 * onoff:.1f} % | {100 * c2c:.1f} % | {passed}/{len(sel)} "
            f"| {cpu:.2f} |"
        )
    print(json.dumps({"bench": "characterize_recovery", "seeds": args.seeds, "rows": rows}))


if __name__ == "__main__":
    main()
