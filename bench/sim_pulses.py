"""Speed of the simulated crossbar: applying one pulse plan to a whole array.

Each plan has a random count 0-8 per device and a random polarity (one SET group, one RESET
group), on arrays of 128 x 128 and 1024 x 1024 devices of the `taox_hfox` preset with its
device-to-device (NL, window) and cycle-to-cycle variation on. Timed: `SimulatedCrossbar.apply`
(contract checks, safety limits, bookkeeping, energy and the device update). Baseline, timed in
the same run: a straightforward NumPy float64 closed form of the same NeuroSim update (curve
inverse, advance, curve; fresh Gaussian C2C noise; clip), per-device curvature included.

Also reported: the simulator at 1024 x 1024 with the opt-in buffered C2C deviates instead of
the default fresh ones. Times are means over all plans, warm-up excluded.

Usage: python bench/sim_pulses.py [--repeats N]. The last line printed is one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import time
from collections.abc import Callable

import numpy as np

from protocols.plan import PulseGroup, PulsePlan
from protocols.response import curve, curve_inverse, nl_to_a
from sim_backend import SimulatedCrossbar, get_preset

PRESET = "taox_hfox"


def make_plans(n: int, count: int, seed: int) -> list[PulsePlan]:
    preset = get_preset(PRESET)
    rng = np.random.default_rng(seed)
    plans = []
    for _ in range(count):
        counts = rng.integers(0, 9, size=(n, n))
        up = rng.random((n, n)) < 0.5
        plans.append(
            PulsePlan.from_groups(
                (n, n),
                [
                    PulseGroup(preset.set_pulse, np.where(up, counts, 0)),
                    PulseGroup(preset.reset_pulse, np.where(up, 0, counts)),
                ],
            )
        )
    return plans


class Baseline:
    """A straightforward float64 NumPy closed form of the same device update."""

    def __init__(self, n: int, seed: int) -> None:
        preset = get_preset(PRESET)
        model = preset.model
        rng = np.random.default_rng(seed)
        self.rng = rng
        d2d = preset.d2d
        size = (n, n)
        self.g_min = model.g_min_s * (1 + d2d.g_min_rel_sigma * rng.standard_normal(size))
        self.g_max = model.g_max_s * (1 + d2d.g_max_rel_sigma * rng.standard_normal(size))
        self.a_up = nl_to_a(model.nl_ltp + d2d.nl_sigma * rng.standard_normal(size))  # type: ignore[union-attr]
        self.a_dn = nl_to_a(-(model.nl_ltd + d2d.nl_sigma * rng.standard_normal(size)))  # type: ignore[union-attr]
        self.p_up = float(model.states_ltp)  # type: ignore[union-attr]
        self.p_dn = float(model.states_ltd)  # type: ignore[union-attr]
        self.sigma = preset.c2c.sigma
        self.g = self.g_min.copy()

    def apply(self, plan: PulsePlan) -> None:
        n = plan.signed_counts().astype(np.float64)
        span = self.g_max - self.g_min
        x = (self.g - self.g_min) / span
        p_up = curve_inverse(x, self.a_up) + np.maximum(n, 0) / self.p_up
        up = curve(np.minimum(p_up, 1.0), self.a_up)
        q_dn = curve_inverse(1.0 - x, self.a_dn) + np.maximum(-n, 0) / self.p_dn
        down = 1.0 - curve(np.minimum(q_dn, 1.0), self.a_dn)
        x = np.where(n > 0, up, np.where(n < 0, down, x))
        x += self.sigma * np.sqrt(np.abs(n)) * self.rng.standard_normal(x.shape)
        self.g = self.g_min + span * np.clip(x, 0.0, 1.0)


def time_per_plan(
    apply: Callable[[PulsePlan], None], plans: list[PulsePlan], repeats: int
) -> float:
    """Mean seconds per plan over `repeats` passes through `plans` (after one warm-up); the
    mean, not the median, so that occasional costs (noise-buffer redraws) are included."""
    apply(plans[0])
    t0 = time.perf_counter()
    for _ in range(repeats):
        for plan in plans:
            apply(plan)
    return (time.perf_counter() - t0) / (repeats * len(plans))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    result: dict[str, object] = {"preset": PRESET, "python": platform.python_version()}
    result["numpy"] = np.__version__
    for n in (128, 1024):
        plans = make_plans(n, 4, seed=n)
        pulses = float(np.mean([p.total_pulses for p in plans]))
        xbar = SimulatedCrossbar(n, n, preset=PRESET, seed=1)
        sim_s = time_per_plan(xbar.apply, plans, args.repeats)
        base = Baseline(n, seed=1)
        base_s = time_per_plan(base.apply, plans, args.repeats)
        result[f"ns_per_crosspoint_{n}"] = round(sim_s / (n * n) * 1e9, 2)
        result[f"baseline_ns_per_crosspoint_{n}"] = round(base_s / (n * n) * 1e9, 2)
        result[f"pulses_per_s_{n}"] = round(pulses / sim_s, -3)
        result[f"baseline_pulses_per_s_{n}"] = round(pulses / base_s, -3)
        result[f"speedup_vs_baseline_{n}"] = round(base_s / sim_s, 2)
    # The same at 1024 x 1024 with deviates served from the reused Gaussian buffer.
    plans = make_plans(1024, 4, seed=1024)
    buffered = SimulatedCrossbar(1024, 1024, preset=PRESET, seed=1, c2c__sampling="buffered")
    buffered_s = time_per_plan(buffered.apply, plans, max(1, args.repeats // 4))
    result["ns_per_crosspoint_1024_buffered_c2c"] = round(buffered_s / 1024**2 * 1e9, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
