"""Re-evaluation helpers: the simulated array aged before scoring, and evaluations kept.

`aged_weights` restores the simulator to the run's latest checkpoint (its exact snapshot: on
a finished run, the array at the end of training), lets `seconds` of retention pass (the
preset's drift and relaxation; `backend.options` such as `drift__nu` switch them on) and
reads the array, as the final read would. `save_evaluation` keeps every evaluation of a run
(`evaluations/evaluation-NNN.json`) and the latest as `evaluation.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hil.insitu.backends import device_model, open_backend
from hil.insitu.run_config import RunConfig
from hil.insitu.rundir import RunDir, RunDirError, write_atomic
from protocols.errors import InputError


def aged_weights(
    rundir: RunDir, cfg: RunConfig, n: int, seconds: float
) -> tuple[NDArray[np.float64], str]:
    """Effective weights read from the run's simulated array after `seconds` of retention."""
    if not np.isfinite(seconds) or seconds < 0:
        raise InputError(f"--after: a time in seconds >= 0 (got {seconds})")
    if cfg.backend.kind != "sim":
        raise InputError(
            f"--after ages the simulated array; {rundir.path} ran on {cfg.backend.kind!r}"
        )
    found = rundir.latest_checkpoint()
    if found is None or found[1].get("backend") is None:
        raise InputError(f"{rundir.path}: no checkpoint with the simulator's state to age")
    _, meta = found
    from hil.insitu.training_run import _mapping, load_pattern_set

    model = device_model(cfg)
    patterns = load_pattern_set(cfg)
    if patterns.size != n:
        raise InputError(f"{rundir.path}: the run's patterns have {patterns.size} units, not {n}")
    mapping = _mapping(cfg, model, patterns)
    backend: Any = open_backend(cfg, mapping.shape[0], mapping.shape[1], model.envelope)
    try:
        backend.restore(meta["backend"])
        backend.elapse(float(seconds))
        g = backend.read()
        drift = backend.config.drift
    finally:
        backend.close()
    W = mapping.weights(g)
    if cfg.mapping.tie_symmetric and cfg.rule.symmetric:
        W = 0.5 * (W + W.T)
    note = f"simulated array at presentation {meta['position']}, aged {seconds:g} s " + (
        f"(drift nu = {drift.nu:g}, nu_sigma = {drift.nu_sigma:g}, relax_sigma = "
        f"{drift.relax_sigma:g})"
        if drift.enabled
        else "(its devices have no retention drift: set backend.options such as "
        "drift__nu to model it)"
    )
    return np.asarray(W, dtype=np.float64), note


def save_evaluation(rundir: RunDir, result: dict[str, Any]) -> Path:
    """Keep `result` as the next `evaluations/evaluation-NNN.json`; `evaluation.json` = latest."""
    folder = rundir.path / "evaluations"
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create {folder}: {exc.strerror or exc}") from None
    data = (json.dumps(result, indent=2, sort_keys=True) + "\n").encode()
    for k in range(1, 100_000):
        path = folder / f"evaluation-{k:03d}.json"
        try:  # claim the number first, so two evaluations never take the same one
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunDirError(f"cannot write {path}: {exc.strerror or exc}") from None
        os.close(fd)
        write_atomic(path, data)
        write_atomic(rundir.path / "evaluation.json", data)
        return path
    raise RunDirError(f"{folder}: too many evaluations")
