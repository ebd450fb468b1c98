"""Ideal device vs float trainer over several seeds: is the in-situ difference seed noise?

For each seed: the float trainer and full `mrnn-hil train` runs on the `ideal` preset with
the proportional scheme (stochastic rounding, the default), the proportional scheme with
nearest rounding (no rounding noise, same mapping), write-verify, and the proportional
default with its per-update cap raised from 16 to 64 pulses (the limit's), all with the
settings of bench/insitu_table.py. Reports accuracy at p = 0.10 / 0.20 minus the float
run's of the same seed, per seed and as mean +- sample standard deviation over the seeds.

Usage: python bench/ideal_vs_float.py [--seeds 0 1 2] [--epochs 100] [--variants ...]
       [--jobs 2] [--out runs/ideal-vs-float]
Last line: one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import logging
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from insitu_table import SCHEMES, base_config, float_run, one_run

VARIANTS: dict[str, dict[str, Any]] = {
    "proportional": SCHEMES["proportional"],
    "proportional_nearest": {"kind": "proportional", "rounding": "nearest"},
    "write_verify": SCHEMES["write_verify"],
    # the proportional default with the per-update cap raised from 16 to the limit's 64
    "proportional_cap64": {"kind": "proportional", "rounding": "stochastic", "max_pulses": 64},
}
LEVELS = ("0.10", "0.20")


def clip_stats(seed: int, epochs: int, max_pulses: int = 16) -> dict[str, float]:
    """How much the proportional cap cuts on `ideal`: the loop of a default run, instrumented.

    Every request the trainer plans is also turned into the scheme's unrounded counts; a
    device is cut when it asks for more than `max_pulses`. Returns the mean and largest
    fraction of requested devices cut per update and the fraction of requested pulses lost.
    """
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)
    from hil.insitu.journal import Journal
    from hil.insitu.run_config import validate_config
    from hil.insitu.rundir import RunDir
    from hil.insitu.training_run import _build, journal_sync, resolve
    from protocols.schemes import UpdateRequest
    from protocols.schemes.proportional import requested_counts
    from protocols.spec import ProportionalScheme

    data = base_config(epochs, seed)
    data["backend"] = {"preset": "ideal"}
    data["scheme"] = {**SCHEMES["proportional"], "max_pulses": max_pulses}
    cut: list[float] = []
    lost: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg, model, patterns = resolve(validate_config(data))
        rundir = RunDir.create(Path(tmp) / "run")
        journal = Journal(rundir.journal_path, sync=journal_sync(cfg))
        trainer = _build(cfg, model, patterns, rundir, journal, None)
        planner = trainer.planner
        plan_open_loop = planner.plan_open_loop

        def observed(scheme: Any, dG: Any, g: Any, rng: Any) -> Any:
            assert isinstance(scheme, ProportionalScheme)
            on = dG != 0
            req = UpdateRequest(dG, g, planner.response, planner.pulses, planner.limits)
            n = np.abs(requested_counts(scheme, req))[on]
            if n.size:
                cut.append(float((n > max_pulses).mean()))
                lost.append(float(np.maximum(n - max_pulses, 0.0).sum() / max(n.sum(), 1e-300)))
            return plan_open_loop(scheme, dG, g, rng)

        planner.plan_open_loop = observed  # type: ignore[method-assign]
        trainer.start()
        for _ in range(epochs * patterns.patterns.shape[0]):
            trainer.step()
        trainer.backend.close()
        journal.close()
    return {
        "updates": float(len(cut)),
        "devices_cut_mean": float(np.mean(cut)),
        "devices_cut_max": float(np.max(cut)),
        "pulses_lost": float(np.mean(lost)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--clip-stats", action="store_true", help="also measure what the 16-pulse cap cuts"
    )
    ap.add_argument("--out", default="runs/ideal-vs-float")
    args = ap.parse_args()
    with ProcessPoolExecutor(args.jobs) as pool:
        refs = {s: pool.submit(float_run, args.epochs, s) for s in args.seeds}
        runs = {
            (s, v): pool.submit(
                one_run, "ideal", v, args.epochs, s, str(Path(args.out) / f"seed{s}"), VARIANTS[v]
            )
            for s in args.seeds
            for v in args.variants
        }
        clips = (
            {s: pool.submit(clip_stats, s, args.epochs) for s in args.seeds}
            if args.clip_stats
            else {}
        )
        float_acc = {s: f.result()["accuracy"] for s, f in refs.items()}
        cut = {s: f.result() for s, f in clips.items()}
        acc = {key: f.result()["accuracy"] for key, f in runs.items()}
    print("| seed | run | acc p=0.10 | acc p=0.20 | diff p=0.10 | diff p=0.20 |")
    print("|---|---|---|---|---|---|")
    diffs: dict[str, dict[str, list[float]]] = {v: {p: [] for p in LEVELS} for v in args.variants}
    for s in args.seeds:
        fa = float_acc[s]
        print(f"| {s} | float | {fa['0.10']:.3f} | {fa['0.20']:.3f} | - | - |")
        for v in args.variants:
            a = acc[(s, v)]
            d = {p: float(a[p]) - float(fa[p]) for p in LEVELS}
            for p in LEVELS:
                diffs[v][p].append(d[p])
            print(
                f"| {s} | ideal {v} | {a['0.10']:.3f} | {a['0.20']:.3f} | "
                f"{d['0.10']:+.3f} | {d['0.20']:+.3f} |"
            )
    summary: dict[str, dict[str, dict[str, float]]] = {}
    print("\n| run | diff p=0.10 (mean +- sd) | diff p=0.20 (mean +- sd) |")
    print("|---|---|---|")
    for v in args.variants:
        summary[v] = {}
        cells = []
        for p in LEVELS:
            x = np.array(diffs[v][p])
            sd = float(x.std(ddof=1)) if x.size > 1 else 0.0
            summary[v][p] = {"mean": float(x.mean()), "sd": sd, "min": x.min(), "max": x.max()}
            cells.append(f"{x.mean():+.3f} +- {sd:.3f}")
        print(f"| ideal {v} - float | {cells[0]} | {cells[1]} |")
    for s, c in cut.items():
        print(
            f"seed {s}: the 16-pulse cap cut {c['devices_cut_mean']:.3f} of the requested "
            f"devices per update (max {c['devices_cut_max']:.3f}), "
            f"{c['pulses_lost']:.3f} of the requested pulses"
        )
    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "seeds": args.seeds,
                "float": {str(s): float_acc[s] for s in args.seeds},
                "runs": {f"{s}/{v}": acc[(s, v)] for (s, v) in acc},
                "diff": summary,
                "clip_stats": {str(k): v for k, v in cut.items()},
            },
            default=float,
        )
    )


if __name__ == "__main__":
    main()
