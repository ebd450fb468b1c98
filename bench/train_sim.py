"""Wall time per presentation: in-situ training on the simulator against the float path.

N = 100 (the built-in 16 letters), so the array is 100 x 200 = 20 000 devices. The float path
is the float trainer's inner step (presentation_update + W += dW); the in-situ path is the
full loop step (read, W from the pairs, the same presentation_update, dW -> dG split, scheme
planning, limit check, journal intent, apply on the simulator, journal applied, metrics).
Both run the same number of presentations from the same W0 in the same process, in
interleaved blocks; the figures are medians over the blocks. The journal's sync mode is the
run default ("auto": on the simulator, intents are not fsynced; `--sync full` adds one fsync
per plan, which costs what the disk's fsync costs).

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

from hil.insitu.journal import Journal
from hil.insitu.run_config import validate_config
from hil.insitu.rundir import RunDir
from hil.insitu.trainer import initial_weights
from hil.insitu.training_run import _build, journal_sync, resolve
from hil.network.learning import presentation_update


class FloatPath:
    """The float trainer's inner step, on the same patterns, rule and W0."""

    def __init__(self, cfg_data: dict[str, object]) -> None:
        from hil.network.patterns import builtin_patterns

        self.cfg = validate_config(cfg_data)
        self.P = builtin_patterns().patterns
        self.W = initial_weights(self.P.shape[1], self.cfg)
        self.rng = np.random.default_rng(0)
        self.pos = 0

    def block(self, count: int) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            target = self.P[self.pos % self.P.shape[0]]
            flips = self.rng.random(target.shape) < self.cfg.training.p_train
            inp = np.where(flips, -target, target)
            self.W = self.W + presentation_update(self.W, inp, target, self.cfg.rule).dW
            self.pos += 1
        return (time.perf_counter() - t0) / count


class InSituPath:
    """The full in-situ step on a simulated 100 x 200 array, journaled in a temp run dir."""

    def __init__(self, cfg_data: dict[str, object], workdir: Path) -> None:
        cfg, model, patterns = resolve(validate_config(cfg_data))
        rundir = RunDir.create(workdir)
        self.journal = Journal(rundir.journal_path, sync=journal_sync(cfg))
        self.trainer = _build(cfg, model, patterns, rundir, self.journal, None)
        self.trainer.start()

    def block(self, count: int) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            self.trainer.step()
        return (time.perf_counter() - t0) / count

    def close(self) -> None:
        self.trainer.backend.close()
        self.journal.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presentations", type=int, default=160)
    ap.add_argument("--preset", default="epiram")
    ap.add_argument("--scheme", default="proportional")
    ap.add_argument("--sync", choices=("auto", "full", "normal"), default="auto")
    args = ap.parse_args()
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)
    data: dict[str, object] = {
        "backend": {"preset": args.preset},
        "scheme": {"kind": args.scheme},
        "run": {"journal_sync": args.sync},
    }
    rounds = 5
    per = max(1, args.presentations // rounds)
    fl = FloatPath(data)
    with tempfile.TemporaryDirectory() as tmp:
        sim = InSituPath(data, Path(tmp) / "run")
        try:
            fl.block(4)
            sim.block(4)  # warm-up
            pairs = [(fl.block(per), sim.block(per)) for _ in range(rounds)]
            pulses_per_plan = sim.trainer.state.totals.pulses / max(
                sim.trainer.state.totals.plans, 1
            )
        finally:
            sim.close()
    # Interleaved blocks, medians: robust to other load on the machine.
    float_s = float(np.median([f for f, _ in pairs]))
    sim_s = float(np.median([s for _, s in pairs]))
    ratio = float(np.median([s / f for f, s in pairs]))
    result = {
        "n_units": 100,
        "devices": 20_000,
        "presentations": args.presentations,
        "preset": args.preset,
        "scheme": args.scheme,
        "journal_sync": args.sync,
        "float_ms_per_presentation": round(float_s * 1e3, 3),
        "sim_ms_per_presentation": round(sim_s * 1e3, 3),
        "ratio": round(ratio, 2),
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
