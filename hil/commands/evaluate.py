"""`mrnn-hil evaluate DIR`: re-evaluate a training run from its saved conductances.

Uses `final.npz` (the backend's final read), or, for an unfinished run, the weight estimate of
its latest checkpoint; with `--after SECONDS` the simulated array restored from the latest
checkpoint, aged (retention drift) before it is read. Nothing is sent to any real array.
Every evaluation is kept (DIR/evaluations/evaluation-NNN.json); DIR/evaluation.json is the
latest.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from protocols.errors import InputError

if TYPE_CHECKING:
    from hil.insitu.rundir import RunDir


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="re-evaluate a training run (accuracy vs Hebbian, Storkey, nearest pattern)",
        description="Re-evaluate the weights of a run directory on freshly corrupted patterns.",
    )
    p.add_argument("run_dir", metavar="DIR", help="run directory made by `mrnn-hil train`")
    p.add_argument("--p", type=float, nargs="+", help="corruption probabilities")
    p.add_argument("--samples", type=int, help="corrupted samples per pattern and p")
    p.add_argument("--seed", type=int, help="seed of the corrupted test sets")
    p.add_argument(
        "--after",
        type=float,
        metavar="SECONDS",
        help="age the simulated array this long (retention drift) before reading and scoring",
    )


def run(args: argparse.Namespace) -> int:
    from hil.insitu.rundir import RunDir

    rundir = RunDir.open(args.run_dir)
    rundir.lock()  # evaluation.json is written: not while another process uses the run
    try:
        return _evaluate(args, rundir)
    finally:
        rundir.release()


def _evaluate(args: argparse.Namespace, rundir: RunDir) -> int:
    from hil.insitu.mapping import make_mapping
    from hil.insitu.training_run import evaluate_weights, load_pattern_set, load_run_config
    from hil.insitu.workload import check_workload

    cfg = load_run_config(rundir)
    update: dict[str, Any] = {}
    if args.p is not None:
        update["p"] = args.p
    if args.samples is not None:
        update["samples"] = args.samples
    data = cfg.model_dump(mode="json")
    data["evaluation"].update(update)
    if args.seed is not None:
        data["seed"] = args.seed
    from hil.insitu.run_config import validate_config

    cfg = validate_config(data, "options")
    patterns = load_pattern_set(cfg)
    check_workload(cfg, patterns)  # before any weight is read
    if args.after is not None:
        from hil.insitu.reevaluate import aged_weights

        W, source = aged_weights(rundir, cfg, patterns.size, args.after)
    elif rundir.final_path.exists():
        saved = rundir.load_npz(rundir.final_path, ("weights",))["weights"]
        if saved.dtype.kind not in "fiu":
            raise InputError(
                f"{rundir.final_path}: the saved weights are {saved.dtype}, not real numbers"
            )
        W = np.asarray(saved, dtype=float)
        source = "final.npz (final read of the array)"
    else:
        found = rundir.latest_checkpoint()
        if found is None:
            raise InputError(f"{rundir.path}: no final.npz and no checkpoint to evaluate")
        arrays, meta = found
        g = arrays.get("g_est")
        if g is None or g.ndim != 2 or g.dtype.kind not in "fiu" or "position" not in meta:
            raise InputError(f"{rundir.path}: the latest checkpoint holds no weight estimate")
        n = g.shape[0]
        from hil.insitu.backends import device_model

        model = device_model(cfg)
        mapping = make_mapping(
            n,
            model.response.g_min_s,
            model.response.g_max_s,
            w_max=cfg.mapping.w_max,
            layout=cfg.mapping.layout,
            diagonal=cfg.mapping.diagonal,
        )
        W = mapping.weights(g)
        if cfg.mapping.tie_symmetric and cfg.rule.symmetric:
            W = 0.5 * (W + W.T)
        source = f"checkpoint at presentation {meta['position']} (weight estimate)"
    if not np.all(np.isfinite(W)):
        raise InputError(f"{rundir.path}: the saved weights hold non-finite values")
    if W.shape != (patterns.size, patterns.size):
        raise InputError(
            f"{rundir.path}: weights are {W.shape}, the run's patterns need "
            f"{(patterns.size, patterns.size)}"
        )
    accuracy = evaluate_weights(W, patterns, cfg)
    result = {"source": source, "samples": cfg.evaluation.samples, "accuracy": accuracy}
    if args.after is not None:
        result["after_s"] = args.after
    from hil.insitu.reevaluate import save_evaluation

    kept = save_evaluation(rundir, result)
    ps = list(accuracy["in_situ"].keys())
    print(f"weights: {source}", file=sys.stdout)
    print(f"{'rule':<18}" + "".join(f"{'p=' + p:>10}" for p in ps))
    for rule, row in accuracy.items():
        print(f"{rule:<18}" + "".join(f"{row[p]:>10.3f}" for p in ps))
    print(f"written: {kept} (latest also in {rundir.path / 'evaluation.json'})")
    return 0
