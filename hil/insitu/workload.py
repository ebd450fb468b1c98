"""How much memory a run's evaluations ask for, checked before any work starts.

A test set holds `patterns x samples` corrupted copies of N-unit patterns, relaxed as one
batch; `evaluation.samples = 1e8` would ask for terabytes after the whole training. The run
is refused before its run directory exists (and `evaluate` before it reads any weights).
Pattern counts and sizes are capped where patterns are loaded (`hil.network.patterns`).
"""

from __future__ import annotations

from hil.insitu.run_config import RunConfig
from hil.network.patterns import PatternSet
from protocols.errors import InputError

#: Most values (patterns x samples x units) one evaluation batch may hold (128 MiB of float64).
MAX_EVAL_VALUES = 1 << 24


def check_workload(cfg: RunConfig, patterns: PatternSet) -> None:
    """InputError naming the field when an evaluation batch would be too large."""
    k, n = patterns.count, patterns.size
    for name, samples in (
        ("evaluation.samples", cfg.evaluation.samples),
        ("evaluation.curve_samples", cfg.evaluation.curve_samples),
    ):
        values = k * samples * n
        if values > MAX_EVAL_VALUES:
            most = max(1, MAX_EVAL_VALUES // (k * n))
            raise InputError(
                f"{name} = {samples}: {k} patterns x {samples} samples x {n} units = "
                f"{values:.3g} values in one test set, over the {MAX_EVAL_VALUES} an evaluation "
                f"may hold; use at most {most}"
            )
