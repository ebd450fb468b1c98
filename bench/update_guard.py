"""The update-guard table of docs/reproduction.md: each treatment of large updates, >= 5 seeds.

Treatments (RuleConfig `side_solver` / `update_guard` / `max_grad`): the settle guard (a side
network still moving at t = 20 is left out: the historical default), no guard on the relaxed
side network, no guard on the exact solve, the magnitude filter and the per-sample max-norm
clip at a stated threshold, each on the exact solve and on the relaxation.

Three measurements per treatment and seed, all on the built-in 16 letters:

- `denoise`: the software trainer in the `mrnn-hil reproduce --train-noise 0.25` setting
  (300 epochs, 16 corrupted copies per presentation, p_train 0.25), Pineda–Almeida accuracy
  on the same test sets as `mrnn-hil reproduce --train-noise 0.25 --p 0.1 0.2 --seed S
  --side-solver ... --update-guard ... --max-grad ...` (1000 samples per pattern and p);
  the seeds train in lockstep (`train_stacked`).
- `float`: the software trainer in the `mrnn-hil train` setting (100 epochs, one copy,
  p_train 0.1), scored like a training run (100 samples per pattern and p).
- `in_situ`: a full `mrnn-hil train` run (epiram preset, proportional scheme, every default)
  with the treatment in its `rule` section.

Usage: python bench/update_guard.py [--seeds 0 1 2 3 4] [--jobs 2] [--treatments ...]
       [--parts denoise float in_situ] [--out runs/update-guard]
Prints a Markdown table (mean +- sample sd over the seeds); last line: one JSON object.
Each result is also kept in OUT/cache/, so an interrupted run resumes where it stopped
(delete the cache to measure again).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

#: name -> the rule's guard fields; the threshold is the one the docs state.
TREATMENTS: dict[str, dict[str, Any]] = {
    "settle": {"side_solver": "relax", "update_guard": "settle"},
    "relax_none": {"side_solver": "relax", "update_guard": "none"},
    "exact_none": {"side_solver": "exact", "update_guard": "none"},
    "exact_filter3": {"side_solver": "exact", "update_guard": "filter", "max_grad": 3.0},
    "exact_clip3": {"side_solver": "exact", "update_guard": "clip", "max_grad": 3.0},
    "relax_filter3": {"side_solver": "relax", "update_guard": "filter", "max_grad": 3.0},
    "exact_filter10": {"side_solver": "exact", "update_guard": "filter", "max_grad": 10.0},
    "exact_clip1": {"side_solver": "exact", "update_guard": "clip", "max_grad": 1.0},
    "relax_clip1": {"side_solver": "relax", "update_guard": "clip", "max_grad": 1.0},
    "relax_clip1.5": {"side_solver": "relax", "update_guard": "clip", "max_grad": 1.5},
}
P_VALUES = (0.10, 0.20)
PARTS = ("denoise", "float", "in_situ")


def denoise(treatment: str, seeds: list[int]) -> dict[str, Any]:
    """The `reproduce --train-noise 0.25` setting for every seed at once."""
    from hil.network import reproduce as experiment
    from hil.network.evaluation import Scores, pineda_recall
    from hil.network.float_training import train_stacked
    from hil.network.patterns import builtin_patterns, test_set

    ps = builtin_patterns()
    t0 = time.process_time()
    per_seed: list[dict[str, Any]] = []
    cfgs = [
        experiment.ReproduceConfig(
            train_noise=0.25, p_values=P_VALUES, seed=s, **TREATMENTS[treatment]
        )
        for s in seeds
    ]
    tc = cfgs[0].train_config()
    trained = train_stacked(np.stack([ps.patterns] * len(seeds)), tc, seeds=seeds)
    for cfg, result in zip(cfgs, trained, strict=True):
        test_seeds, _ = experiment._streams(cfg)
        acc = {}
        for p, seed in zip(cfg.p_values, test_seeds, strict=True):
            X, labels = test_set(ps.patterns, cfg.samples, p, np.random.default_rng(seed))
            out = pineda_recall(result.W, X).state
            acc[experiment.pkey(p)] = Scores.of(out, ps.patterns[labels], labels, ps.count).accuracy
        guard = experiment._guard_summary(result.history)
        per_seed.append({"accuracy": acc, "refused": guard["refused"], **guard["outcomes"]})
    return {"per_seed": per_seed, "cpu_s": time.process_time() - t0}


def float_run(treatment: str, seeds: list[int]) -> dict[str, Any]:
    """The software twin of a default `mrnn-hil train` run, for every seed at once."""
    from hil.insitu.run_config import validate_config
    from hil.insitu.training_run import evaluate_weights
    from hil.network.float_training import TrainConfig, train_stacked
    from hil.network.patterns import builtin_patterns

    ps = builtin_patterns()
    t0 = time.process_time()
    cfg0 = validate_config({"rule": TREATMENTS[treatment]})
    tr = cfg0.training
    tc = TrainConfig(
        epochs=tr.epochs,
        mode=tr.mode,
        p_train=tr.p_train,
        copies=tr.copies,
        w_init=tr.w0_range,
        rule=cfg0.rule,
    )
    trained = train_stacked(np.stack([ps.patterns] * len(seeds)), tc, seeds=seeds)
    per_seed = []
    for s, result in zip(seeds, trained, strict=True):
        cfg = validate_config({"seed": s, "rule": TREATMENTS[treatment]})
        acc = evaluate_weights(result.W, ps, cfg, baselines=False)["in_situ"]
        refused = sum(h.refused for h in result.history)
        clipped = sum(h.outcomes.get("clipped", 0) for h in result.history)
        per_seed.append({"accuracy": acc, "refused": refused, "clipped": clipped})
    return {"per_seed": per_seed, "cpu_s": time.process_time() - t0}


def in_situ(treatment: str, seed: int, out: str) -> dict[str, Any]:
    """One default `mrnn-hil train` run with the treatment in its rule section."""
    from hil.insitu.run_config import validate_config
    from hil.insitu.training_run import start_run

    path = Path(out) / f"{treatment}-seed{seed}"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.process_time()
    report = start_run(validate_config({"seed": seed, "rule": TREATMENTS[treatment]}), path).report
    return {
        "accuracy": report["accuracy"]["in_situ"],
        "refused": report["totals"]["refused"],
        "pulses": report["totals"]["pulses"],
        "cpu_s": time.process_time() - t0,
    }


def cached(out: str, key: str, fn: Any, *args: Any) -> dict[str, Any]:
    """Run fn(*args) unless OUT/cache/KEY.json holds its result: a rerun resumes, not restarts."""
    path = Path(out) / "cache" / f"{key}.json"
    if path.is_file():
        result: dict[str, Any] = json.loads(path.read_text())
        return result
    result = fn(*args)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return result


def mean_sd(values: list[float]) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--treatments", nargs="+", default=list(TREATMENTS), choices=list(TREATMENTS))
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/update-guard")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    futures: dict[tuple[str, str], Future[dict[str, Any]]] = {}
    situ: dict[tuple[str, int], Future[dict[str, Any]]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for t in args.treatments:
            seeds = "-".join(map(str, args.seeds))
            if "denoise" in args.parts:
                futures[(t, "denoise")] = pool.submit(
                    cached, args.out, f"denoise-{t}-{seeds}", denoise, t, args.seeds
                )
            if "float" in args.parts:
                futures[(t, "float")] = pool.submit(
                    cached, args.out, f"float-{t}-{seeds}", float_run, t, args.seeds
                )
            if "in_situ" in args.parts:
                for s in args.seeds:
                    situ[(t, s)] = pool.submit(
                        cached, args.out, f"in_situ-{t}-{s}", in_situ, t, s, args.out
                    )
        done = {key: f.result() for key, f in futures.items()}
        situ_done = {key: f.result() for key, f in situ.items()}

    results: dict[str, dict[str, Any]] = {}
    for t in args.treatments:
        row: dict[str, Any] = {"rule": TREATMENTS[t]}
        for part in args.parts:
            if part == "in_situ":
                per_seed = [situ_done[(t, s)] for s in args.seeds]
            else:
                per_seed = done[(t, part)]["per_seed"]
            row[part] = {
                "per_seed": per_seed,
                **{
                    p: dict(
                        zip(
                            ("mean", "sd"),
                            mean_sd([r["accuracy"][p] for r in per_seed]),
                            strict=True,
                        )
                    )
                    for p in ("0.10", "0.20")
                },
                "refused_mean": float(np.mean([r["refused"] for r in per_seed])),
            }
        results[t] = row

    header = "| treatment | " + " | ".join(
        f"{part} p=0.10 | {part} p=0.20 | {part} refused" for part in args.parts
    )
    print(header + " |")
    print("|---" * (1 + 3 * len(args.parts)) + "|")
    for t, row in results.items():
        cells = []
        for part in args.parts:
            r = row[part]
            cells += [f"{r[p]['mean']:.3f} ± {r[p]['sd']:.3f}" for p in ("0.10", "0.20")]
            cells.append(f"{r['refused_mean']:.0f}")
        print(f"| {t} | " + " | ".join(cells) + " |")
    print(
        json.dumps(
            {
                "bench": "update_guard",
                "seeds": args.seeds,
                "wall_s": round(time.perf_counter() - t0, 1),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
