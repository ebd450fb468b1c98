"""The in-situ accuracy table of docs/in-situ.md: presets x schemes, plus the float run.

Each cell is a full `mrnn-hil train` run (same seed, same config apart from preset and
scheme) on the built-in 16 letters (N = 100, 20 000 devices): accuracy at p = 0.10 and 0.20
on the final read of the array, pulses and programming-energy estimate. The float row is the
software trainer (hil.network.float_training) with the same seed, rule and training mode.

Usage: python bench/insitu_table.py [--epochs 100] [--presets ...] [--schemes ...]
       [--jobs 2] [--out runs/table]
The presets x schemes cells are also a sweep file: `mrnn-hil sweep docs/sweeps/in-situ-table.yaml`
(same configs, same numbers); `--presets` with no name prints the float row only.
Prints a Markdown table; last line: one JSON object with every number.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import logging
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

SCHEMES: dict[str, dict[str, Any]] = {
    "proportional": {"kind": "proportional", "rounding": "stochastic"},
    "manhattan": {"kind": "manhattan", "threshold_steps": 0.5},
    "write_verify": {"kind": "write_verify", "max_iterations": 3, "tolerance_frac": 0.01},
}


def base_config(epochs: int, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "training": {"epochs": epochs, "mode": "denoising", "p_train": 0.1},
        "evaluation": {"p": [0.1, 0.2], "samples": 100, "every_epochs": max(1, epochs // 10)},
    }


def one_run(
    preset: str,
    scheme: str,
    epochs: int,
    seed: int,
    out: str,
    scheme_cfg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One full run; `scheme_cfg` (default SCHEMES[scheme]) is the run's scheme section."""
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)
    from hil.insitu.run_config import validate_config
    from hil.insitu.training_run import start_run

    data = base_config(epochs, seed)
    data["backend"] = {"preset": preset}
    data["scheme"] = SCHEMES[scheme] if scheme_cfg is None else scheme_cfg
    path = Path(out) / f"{preset}-{scheme}"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    report = start_run(validate_config(data), path).report
    t = report["totals"]
    return {
        "preset": preset,
        "scheme": scheme,
        "accuracy": report["accuracy"]["in_situ"],
        "pulses": t["pulses"],
        "energy_j": t["energy_j"],
        "refused": t["refused"],
        "stuck": report["stuck"]["stuck_devices"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "run": str(path),
    }


def float_run(epochs: int, seed: int) -> dict[str, Any]:
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)
    from hil.insitu.run_config import validate_config
    from hil.insitu.training_run import evaluate_weights
    from hil.network.float_training import TrainConfig, train
    from hil.network.patterns import builtin_patterns

    cfg = validate_config(base_config(epochs, seed))
    patterns = builtin_patterns()
    W = train(
        patterns.patterns,
        TrainConfig(
            epochs=epochs, mode="denoising", p_train=0.1, seed=seed, rule=cfg.rule, w_init=0.1
        ),
    ).W
    acc = evaluate_weights(W, patterns, cfg)
    return {"preset": "float", "scheme": "-", "accuracy": acc["in_situ"], "baselines": acc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--presets",
        nargs="*",
        default=["ideal", "epiram", "soft_bounds", "taox_hfox", "alox_hfo2"],
        help="none (`--presets` alone): only the float row and the baselines",
    )
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/in-situ-table")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        ref = pool.submit(float_run, args.epochs, args.seed)
        futures = [
            pool.submit(one_run, preset, scheme, args.epochs, args.seed, args.out)
            for preset in args.presets
            for scheme in args.schemes
        ]
        rows = [f.result() for f in futures]
        reference = ref.result()
    base = reference["baselines"]
    print("| preset | scheme | acc p=0.10 | acc p=0.20 | pulses | energy (J) | refused | stuck |")
    print("|---|---|---|---|---|---|---|---|")
    acc = reference["accuracy"]
    print(f"| float (software) | - | {acc['0.10']:.3f} | {acc['0.20']:.3f} | - | - | - | - |")
    for r in rows:
        acc = r["accuracy"]
        print(
            f"| {r['preset']} | {r['scheme']} | {acc['0.10']:.3f} | {acc['0.20']:.3f} | "
            f"{r['pulses']:.3g} | {r['energy_j']:.3g} | {r['refused']} | {r['stuck']} |"
        )
    for rule in ("hebbian", "storkey", "nearest_pattern"):
        acc = base[rule]
        print(f"| {rule} (baseline) | - | {acc['0.10']:.3f} | {acc['0.20']:.3f} | - | - | - | - |")
    print(json.dumps({"epochs": args.epochs, "seed": args.seed, "float": reference, "runs": rows}))


if __name__ == "__main__":
    main()
