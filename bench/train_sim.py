"""Wall time per presentation: in-situ training on the simulator against the float path.

N = 100 (the built-in 16 glyphs), so the array is 100 x 200 = 20 000 devices. The float path
is the float trainer's inner step (presentation_update + W += dW); the in-situ path is the
full loop step (read, W from the pairs, the same presentation_update, dW -> dG split, scheme
planning, limit check, journal intent, apply on the simulator, journal applied, metrics).
Both run the same number of presentations from the same W0 in the same process.

Usage: python bench/train_sim.py [--presentations 160] [--preset epiram] [--scheme proportional]
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
import time
from pathlib import Path

import numpy as np

from hil.insitu import initial_weights
from hil.journal import Journal
from hil.learning import presentation_update
from hil.run_config import validate_config
from hil.rundir import RunDir
from hil.training_run import _build, journal_sync, resolve


def float_path(cfg_data: dict[str, object], count: int) -> float:
    cfg = validate_config(cfg_data)
    from hil.patterns import builtin_patterns

    P = builtin_patterns().patterns
    W = initial_weights(P.shape[1], cfg)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for pos in range(count):
        target = P[pos % P.shape[0]]
        inp = np.where(rng.random(target.shape) < cfg.training.p_train, -target, target)
        W = W + presentation_update(W, inp, target, cfg.rule).dW
    return (time.perf_counter() - t0) / count


def insitu_path(cfg_data: dict[str, object], count: int, workdir: Path) -> tuple[float, float]:
    cfg, model, patterns = resolve(validate_config(cfg_data))
    rundir = RunDir.create(workdir)
    journal = Journal(rundir.journal_path, sync=journal_sync(cfg))
    trainer = _build(cfg, model, patterns, rundir, journal, None)
    try:
        trainer.start()
        t0 = time.perf_counter()
        for _ in range(count):
            trainer.step()
        per = (time.perf_counter() - t0) / count
        pulses = trainer.state.totals.pulses / max(trainer.state.totals.plans, 1)
    finally:
        trainer.backend.close()
        journal.close()
    return per, pulses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presentations", type=int, default=160)
    ap.add_argument("--preset", default="epiram")
    ap.add_argument("--scheme", default="proportional")
    ap.add_argument("--sync", choices=("full", "normal"), default="full")
    args = ap.parse_args()
    logging.getLogger("hil.learning").setLevel(logging.ERROR)
    data: dict[str, object] = {
        "backend": {"preset": args.preset},
        "scheme": {"kind": args.scheme},
        "run": {"journal_sync": args.sync},
    }
    float_s = float_path(data, args.presentations)
    with tempfile.TemporaryDirectory() as tmp:
        sim_s, pulses_per_plan = insitu_path(data, args.presentations, Path(tmp) / "run")
    result = {
        "n_units": 100,
        "devices": 20_000,
        "presentations": args.presentations,
        "preset": args.preset,
        "scheme": args.scheme,
        "journal_sync": args.sync,
        "float_ms_per_presentation": round(float_s * 1e3, 3),
        "sim_ms_per_presentation": round(sim_s * 1e3, 3),
        "ratio": round(sim_s / float_s, 2),
        "target_ratio": 3.0,
        "pulses_per_plan": round(pulses_per_plan, 1),
    }
    print(
        f"float {result['float_ms_per_presentation']} ms, in-situ "
        f"{result['sim_ms_per_presentation']} ms per presentation (x{result['ratio']})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
