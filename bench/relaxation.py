"""Batched fixed-step relaxation (hil.network.dynamics) against solve_ivp (hil.network.reference).

Both integrate eq. 18 for the same trained W and the same corrupted inputs. solve_ivp runs on
a subset (it is slow); the batched solver runs on that subset and on the full evaluation
batch. It also trains K pattern sets of the font for a few epochs both in lockstep
(`train_stacked`, the path of `mrnn-hil reproduce --pattern-sets`) and one after the other
(`train`), the baseline. The last line is one JSON object with times per sample, the
speed-ups and the largest differences between the paths compared.

    python bench/relaxation.py [--samples K] [--ref-samples M] [--sets S] [--set-epochs E]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import time

import numpy as np

from hil.network.evaluation import RECALL_CONFIG, pineda_recall
from hil.network.float_training import TrainConfig, train, train_stacked
from hil.network.pattern_sets import DrawRule, draw_sets
from hil.network.patterns import builtin_patterns, letters26, test_set
from hil.network.reference import reference_forward


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1000, help="per pattern, batched run")
    ap.add_argument("--ref-samples", type=int, default=64, help="solve_ivp subset size")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--sets", type=int, default=20, help="pattern sets trained in lockstep")
    ap.add_argument("--set-epochs", type=int, default=10, help="epochs of that comparison")
    args = ap.parse_args()

    ps = builtin_patterns()
    t0 = time.perf_counter()
    W = train(ps.patterns, TrainConfig(epochs=args.epochs)).W
    train_s = time.perf_counter() - t0
    X, _ = test_set(ps.patterns, args.samples, 0.10, np.random.default_rng(1))
    subset = X[np.random.default_rng(2).choice(len(X), args.ref_samples, replace=False)]

    t0 = time.perf_counter()
    ref = reference_forward(W, subset, t_max=RECALL_CONFIG.t_max, rtol=1e-6, atol=1e-8)
    ref_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    sub = pineda_recall(W, subset).state
    batch_subset_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    full = pineda_recall(W, X)
    batch_full_s = time.perf_counter() - t0

    sets = draw_sets(letters26(), "letters", args.sets, DrawRule(), seed=0)
    stack = np.stack([ps.patterns for ps in sets])
    cfg = TrainConfig(epochs=args.set_epochs)
    t0, c0 = time.perf_counter(), time.process_time()
    lockstep = train_stacked(stack, cfg)
    lock_s, lock_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    separate = [train(P, cfg) for P in stack]
    sep_s, sep_cpu = time.perf_counter() - t0, time.process_time() - c0
    stack_diff = max(
        float(np.abs(a.W - b.W).max()) for a, b in zip(lockstep, separate, strict=True)
    )

    per_ref = ref_s / len(subset)
    per_batch = batch_full_s / len(X)
    result = {
        "bench": "relaxation",
        "n_units": int(W.shape[0]),
        "train_300_epochs_s": round(train_s, 3),
        "solve_ivp_samples": len(subset),
        "solve_ivp_s": round(ref_s, 4),
        "solve_ivp_per_sample_ms": round(1e3 * per_ref, 4),
        "batched_samples": len(X),
        "batched_s": round(batch_full_s, 4),
        "batched_per_sample_ms": round(1e3 * per_batch, 5),
        "batched_subset_s": round(batch_subset_s, 4),
        "speedup_per_sample": round(per_ref / per_batch, 1),
        "max_abs_diff_vs_solve_ivp": float(np.abs(sub - ref).max()),
        "batched_converged_fraction": float(full.converged.mean()),
        "sets": args.sets,
        "set_epochs": args.set_epochs,
        "separate_train_s": round(sep_s, 3),
        "separate_train_cpu_s": round(sep_cpu, 3),
        "lockstep_train_s": round(lock_s, 3),
        "lockstep_train_cpu_s": round(lock_cpu, 3),
        "lockstep_speedup_cpu": round(sep_cpu / lock_cpu, 2),
        "max_abs_w_diff_lockstep_vs_separate": stack_diff,
        "omp_threads": os.environ["OMP_NUM_THREADS"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
