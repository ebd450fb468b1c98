"""How much each programming scheme learns in a short in-situ run, against the untrained
network and the Hebbian and Storkey baselines, over several run seeds.

The run is the one of `test_every_scheme_trains_through_journaled_plans`
(tests/test_insitu.py): four random 4 x 4 patterns (numpy default_rng(3), each pixel on with
probability 1/2), EpiRAM, denoising mode, eta 0.05, w_max 1.0, 30 epochs, write-verify with
3 iterations per update; accuracy at p = 0.1 and 0.2 over 50 corrupted samples per pattern,
as the run's own final evaluation. "untrained" is W0 (the weights the run starts from) on
the same test set.

Usage: python bench/scheme_learning.py [--seeds 0 1 2 ...] [--epochs 30]
Prints one line per scheme and seed; last line: one JSON object with every number.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.insitu.journal import Journal
from hil.insitu.run_config import validate_config
from hil.insitu.rundir import RunDir
from hil.insitu.trainer import initial_weights
from hil.insitu.training_run import _build, evaluate_weights, resolve

SCHEMES = ("manhattan", "write_verify", "outer_product")


def random_patterns(seed: int = 3, count: int = 4, side: int = 4) -> str:
    """`count` random side x side patterns in the text format, from numpy default_rng(seed)."""
    rng = np.random.default_rng(seed)
    blocks = []
    for i in range(count):
        on = rng.random((side, side)) < 0.5
        rows = "\n".join("".join("#" if b else "." for b in row) for row in on)
        blocks.append(f"[p{i}]\n{rows}\n")
    return "\n".join(blocks)


def run_config(patterns: Path, scheme: str, seed: int, epochs: int) -> dict[str, Any]:
    extra: dict[str, Any] = {"kind": scheme}
    if scheme == "write_verify":
        extra["max_iterations"] = 3
    return {
        "seed": seed,
        "training": {"patterns": str(patterns), "epochs": epochs, "mode": "denoising"},
        "backend": {"preset": "epiram"},
        "limits": {
            "max_set_v": 7.5,
            "max_reset_v": 4.5,
            "allow_raise": ["max_set_v", "max_reset_v"],
        },
        "programming": {"max_iterations": 6},
        "evaluation": {"samples": 50, "curve_samples": 4, "every_epochs": 10},
        "run": {"checkpoint_every": 5},
        "scheme": extra,
        "rule": {"eta": 0.05},
        "mapping": {"w_max": 1.0},
    }


def measure(scheme: str, seed: int, epochs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        patterns = tmp / "patterns.txt"
        patterns.write_text(random_patterns())
        cfg, model, pset = resolve(validate_config(run_config(patterns, scheme, seed, epochs)))
        rundir = RunDir.create(tmp / "run")
        with Journal(rundir.journal_path) as journal:
            trainer = _build(cfg, model, pset, rundir, journal, None)
            trainer.start()
            trainer.run()
            weights = trainer.final_state()["weights"]
            trainer.backend.close()
        rundir.release()
        accuracy = evaluate_weights(weights, pset, cfg)
        w0 = initial_weights(pset.patterns.shape[1], cfg)
        accuracy["untrained"] = evaluate_weights(w0, pset, cfg, baselines=False)["in_situ"]
    return {"scheme": scheme, "seed": seed, "epochs": epochs, "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="*", default=list(range(8)))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--schemes", nargs="*", default=list(SCHEMES))
    args = parser.parse_args()
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)
    rows = []
    for seed in args.seeds:
        for scheme in args.schemes:
            row = measure(scheme, seed, args.epochs)
            rows.append(row)
            acc = row["accuracy"]
            cells = "  ".join(
                f"{name} {'/'.join(f'{v:.2f}' for v in acc[name].values())}"
                for name in ("untrained", "in_situ", "hebbian", "storkey")
            )
            print(f"seed {seed}  {scheme:13s}  {cells}", flush=True)
    print(json.dumps({"bench": "scheme_learning", "epochs": args.epochs, "rows": rows}))


if __name__ == "__main__":
    main()
