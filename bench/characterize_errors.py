"""How far `characterize` lands from the simulated devices it measured, over several seeds.

For every shipped protocol (one per preset) and seed, runs the characterisation on the
simulator (optionally with read noise) and compares with what the simulator drew:

* C2C sigma against the preset's (relative error; absolute value when the preset has none);
* read noise against the read sigma that was set;
* G_min, G_max and on/off (medians over the devices) against the medians of the devices'
  drawn bounds (`SimulatedCrossbar.device_bounds`), and each device's G_min, G_max against
  its own drawn bounds (worst device).

These are the figures behind the bounds in tests/test_characterize.py.

Usage: python bench/characterize_errors.py [--seeds 5] [--read-sigma 0.02] [--presets ...]
Prints a Markdown table of the worst error over the seeds; last line: one JSON object with
every number.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.characterize.characterization import characterize, device_grid
from protocols.protocol_file import library_dir, load_protocol
from sim_backend.crossbar import SimulatedCrossbar
from sim_backend.presets import PRESETS


def measure(name: str, seed: int, read_sigma: float) -> dict[str, Any]:
    """One characterisation of preset `name` and its errors against the drawn devices."""
    protocol = load_protocol(library_dir() / f"{name}.yaml")
    cfg = PRESETS[name]
    k = protocol.characterize.devices
    extra: dict[str, Any] = {"readout": {"read_sigma": read_sigma}} if read_sigma else {}
    with SimulatedCrossbar(
        *device_grid(k), preset=name, seed=seed, limits=protocol.limits, **extra
    ) as array:
        lo, hi = (b.reshape(-1)[:k] for b in array.device_bounds())
        _, result = characterize(array, protocol)
    m = result.metrics
    dev_lo = np.asarray(result.per_device["g_min_s"])
    dev_hi = np.asarray(result.per_device["g_max_s"])
    c2c = cfg.c2c.sigma
    return {
        "preset": name,
        "seed": seed,
        "c2c_err": m["c2c_sigma"] / c2c - 1.0 if c2c > 0 else m["c2c_sigma"],
        "read_noise_err": m["read_noise"] / read_sigma - 1.0 if read_sigma else m["read_noise"],
        "g_min_err": m["g_min_s"] / np.median(lo) - 1.0,
        "g_max_err": m["g_max_s"] / np.median(hi) - 1.0,
        "on_off_err": m["on_off"] / (np.median(hi) / np.median(lo)) - 1.0,
        "device_g_err": float(
            max(np.max(np.abs(dev_lo / lo - 1)), np.max(np.abs(dev_hi / hi - 1)))
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--read-sigma", type=float, default=0.0)
    parser.add_argument("--presets", nargs="*", default=sorted(PRESETS))
    args = parser.parse_args()
    rows = [
        measure(name, seed, args.read_sigma) for name in args.presets for seed in range(args.seeds)
    ]
    keys = ("c2c_err", "read_noise_err", "g_min_err", "g_max_err", "on_off_err", "device_g_err")
    print(f"read sigma {args.read_sigma:g}, seeds 0-{args.seeds - 1}; worst |error| in %")
    print("| preset | C2C | read noise | G_min | G_max | on/off | worst device G |")
    print("|---|---|---|---|---|---|---|")
    for name in args.presets:
        sel = [r for r in rows if r["preset"] == name]
        worst = [max(abs(r[key]) for r in sel) for key in keys]
        absolute = {"c2c_err": PRESETS[name].c2c.sigma == 0, "read_noise_err": not args.read_sigma}
        cells = [
            f"{w:.2g} abs" if absolute.get(key) else f"{100 * w:.2f}"
            for key, w in zip(keys, worst, strict=True)
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(json.dumps({"bench": "characterize_errors", "read_sigma": args.read_sigma, "rows": rows}))


if __name__ == "__main__":
    main()
