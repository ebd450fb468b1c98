"""How close the outer-product scheme's expected update comes, on average, to a rank-1 request.

The setting of `test_outer_product_is_unbiased_for_rank_one_requests` (tests/test_schemes.py):
a linear 1000-state device (1-100 uS), a 6 x 5 request 0.5 step x outer(y, v) with y, v
standard normal from numpy default_rng(seed), max_pulses 16; the mean over `trials` plans
of the expected change (each plan draws its own stochastic rounding from the same generator)
against the request. Reports the worst device's error in steps and the least-squares gain
sum(mean * request) / sum(request^2).

Usage: python bench/outer_product_bias.py [--trials 2400] [--seeds 11 0 1 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocols.limits import SafetyLimits
from protocols.response import NeuroSimResponse
from protocols.schemes import plan_update_detailed
from protocols.spec import OuterProductScheme, Pulse, PulsePair

LINEAR = NeuroSimResponse(
    g_min_s=1e-6, g_max_s=100e-6, states_ltp=1000, states_ltd=1000, nl_ltp=0.0, nl_ltd=0.0
)
STEP = (LINEAR.g_max_s - LINEAR.g_min_s) / 1000
NOMINAL = PulsePair(
    set=Pulse(amplitude_v=2.0, width_s=10e-9), reset=Pulse(amplitude_v=-2.0, width_s=10e-9)
)
ROOMY = SafetyLimits(max_energy_per_update_j=1.0, compliance_a=0.1)


def measure(seed: int, trials: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    y, v = rng.standard_normal(6), rng.standard_normal(5)
    dg = 0.5 * STEP * np.outer(y, v)
    g = np.full(dg.shape, 50e-6)
    scheme = OuterProductScheme(kind="outer_product", max_pulses=16)
    total = np.zeros_like(dg)
    for _ in range(trials):
        total += plan_update_detailed(
            scheme, dg, g, LINEAR, NOMINAL, ROOMY, rng=rng
        ).expected_delta_g
    mean = total / trials
    return {
        "seed": seed,
        "max_error_steps": float(np.max(np.abs(mean - dg)) / STEP),
        "gain": float(np.sum(mean * dg) / np.sum(dg * dg)),
        "max_request_steps": float(np.abs(dg).max() / STEP),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2400)
    parser.add_argument("--seeds", type=int, nargs="*", default=[11, *range(9)])
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        row = measure(seed, args.trials)
        rows.append(row)
        print(
            f"seed {seed:3d}: worst device {row['max_error_steps']:.4f} steps, "
            f"gain {row['gain']:.4f} (largest request {row['max_request_steps']:.2f} steps)",
            flush=True,
        )
    print(json.dumps({"bench": "outer_product_bias", "trials": args.trials, "rows": rows}))


if __name__ == "__main__":
    main()
