"""A training run from start (or resume) to report: the glue between config, backend and loop.

`start_run` validates everything (config, patterns, protocol, limits) and creates the run
directory before the first pulse; `resume_run` reloads the resolved config of a run directory
and continues it; both end in `finish_run` (final.npz, evaluation against the Hopfield
baselines, report).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.insitu.backends import DeviceModel, device_model, open_backend
from hil.insitu.journal import Journal, SyncMode
from hil.insitu.mapping import WeightMapping, make_mapping
from hil.insitu.pulse_planner import UpdatePlanner
from hil.insitu.run_config import RunConfig, validate_config
from hil.insitu.rundir import RunDir
from hil.insitu.trainer import ControllerState, InSituTrainer
from hil.network.evaluation import nearest_pattern, pineda_recall, score
from hil.network.hopfield import hebbian, recall, storkey
from hil.network.patterns import PatternSet, patterns_from_spec, test_set
from protocols.backend import BackendError, CrossbarBackend

Progress = Callable[[ControllerState, int], None]

STREAM_FINAL_EVAL = 6


@dataclass
class RunOutcome:
    rundir: RunDir
    report: dict[str, Any]
    resumed: str | None = None


def load_pattern_set(cfg: RunConfig) -> PatternSet:
    return patterns_from_spec(cfg.training.patterns)


def resolve(cfg: RunConfig) -> tuple[RunConfig, DeviceModel, PatternSet]:
    """Validate every input and pin the scheme and limits into the config (no I/O to arrays)."""
    patterns = load_pattern_set(cfg)
    model = device_model(cfg)
    resolved = cfg.model_copy(
        update={"scheme": model.scheme, "limits": model.limits, "response": model.response}
    )
    # Round trip through plain data so the written config reloads to the same model.
    resolved = validate_config(resolved.model_dump(mode="json"), "resolved config")
    return resolved, model, patterns


def _mapping(cfg: RunConfig, model: DeviceModel, patterns: PatternSet) -> WeightMapping:
    return make_mapping(
        patterns.size,
        model.response.g_min_s,
        model.response.g_max_s,
        w_max=cfg.mapping.w_max,
        layout=cfg.mapping.layout,
        diagonal=cfg.mapping.diagonal,
    )


def _open(cfg: RunConfig, model: DeviceModel, patterns: PatternSet) -> CrossbarBackend:
    rows, cols = _mapping(cfg, model, patterns).shape
    return open_backend(cfg, rows, cols, model.limits)


def _build(
    cfg: RunConfig,
    model: DeviceModel,
    patterns: PatternSet,
    rundir: RunDir,
    journal: Journal,
    progress: Progress | None,
    backend: CrossbarBackend | None = None,
) -> InSituTrainer:
    """The trainer of a run; `backend` is opened here unless the caller already has it."""
    mapping = _mapping(cfg, model, patterns)
    if backend is None:
        backend = open_backend(cfg, mapping.shape[0], mapping.shape[1], model.limits)
    trainer: InSituTrainer | None = None

    def counts() -> np.ndarray:
        assert trainer is not None
        return trainer.state.run_counts

    planner = UpdatePlanner(
        model.scheme, model.response, model.pulses, model.limits, run_counts=counts
    )
    trainer = InSituTrainer(
        cfg,
        backend,
        rundir,
        journal,
        patterns.patterns,
        planner,
        mapping,
        model.limits,
        on_progress=progress,
    )
    return trainer


def journal_sync(cfg: RunConfig) -> SyncMode:
    if cfg.run.journal_sync == "auto":
        return "normal" if cfg.backend.kind == "sim" else "full"
    return cfg.run.journal_sync


def start_run(cfg: RunConfig, out: str | Path, progress: Progress | None = None) -> RunOutcome:
    resolved, model, patterns = resolve(cfg)
    # The array first: an instrument that cannot be opened leaves no run directory behind.
    backend = _open(resolved, model, patterns)
    journal: Journal | None = None
    try:
        rundir = RunDir.create(out)
        # The resolved config next: from here on the directory is a run that --resume continues.
        rundir.write_json("config.json", resolved.model_dump(mode="json"))
        journal = Journal(rundir.journal_path, sync=journal_sync(resolved))
        journal.set_meta("status", "running")
        journal.set_meta("device_model", model.source)
        trainer = _build(resolved, model, patterns, rundir, journal, progress, backend)
        t0 = time.perf_counter()
        with _resumable(rundir):
            trainer.start()
            trainer.run()
            report = finish_run(trainer, patterns, time.perf_counter() - t0)
    finally:
        backend.close()
        if journal is not None:
            journal.close()
    return RunOutcome(rundir, report)


@contextmanager
def _resumable(rundir: RunDir) -> Iterator[None]:
    """An instrument failure mid-run says how to continue (the journal holds every plan)."""
    try:
        yield
    except BackendError as exc:
        raise BackendError(
            f"{exc}; every plan sent is journaled: continue with "
            f"`mrnn-hil train --resume {rundir.path}`"
        ) from exc


def load_run_config(rundir: RunDir) -> RunConfig:
    return validate_config(rundir.read_json("config.json"), f"{rundir.config_path}")


def resume_run(path: str | Path, progress: Progress | None = None) -> RunOutcome:
    rundir = RunDir.open(path)
    rundir.check_writable()
    cfg = load_run_config(rundir)
    cfg, model, patterns = resolve(cfg)
    journal = Journal(rundir.journal_path, sync=journal_sync(cfg))
    trainer = _build(cfg, model, patterns, rundir, journal, progress)
    t0 = time.perf_counter()
    try:
        with _resumable(rundir):
            note = trainer.resume()
            trainer.run()
            report = finish_run(trainer, patterns, time.perf_counter() - t0)
    finally:
        trainer.backend.close()
        journal.close()
    return RunOutcome(rundir, report, resumed=note)


def evaluate_weights(
    W: np.ndarray, patterns: PatternSet, cfg: RunConfig, *, baselines: bool = True
) -> dict[str, dict[str, float]]:
    """Accuracy of the trained W, and of Hebbian / Storkey / nearest pattern, per p."""
    P = patterns.patterns
    out: dict[str, dict[str, float]] = {"in_situ": {}}
    if baselines:
        out.update({"hebbian": {}, "storkey": {}, "nearest_pattern": {}})
        w_heb, w_sto = hebbian(P), storkey(P)
    for p in cfg.evaluation.p:
        key = f"{p:.2f}"
        rng = np.random.default_rng([cfg.seed, STREAM_FINAL_EVAL, round(p * 1000)])
        corrupted, labels = test_set(P, cfg.evaluation.samples, p, rng)
        clean = P[labels]
        v = pineda_recall(W, corrupted, v0=cfg.rule.v0).state
        out["in_situ"][key] = float(score(v, clean)[0].mean())
        if baselines:
            out["hebbian"][key] = float(score(recall(w_heb, corrupted, rng).state, clean)[0].mean())
            out["storkey"][key] = float(score(recall(w_sto, corrupted, rng).state, clean)[0].mean())
            out["nearest_pattern"][key] = float(
                score(nearest_pattern(P, corrupted, rng), clean)[0].mean()
            )
    return out


def finish_run(trainer: InSituTrainer, patterns: PatternSet, wall_s: float) -> dict[str, Any]:
    """final.npz, evaluation, report; the journal's status is set last."""
    from hil.insitu.report import write_report

    cfg = trainer.cfg
    final = trainer.final_state()
    trainer.rundir.save_npz(trainer.rundir.final_path, final)
    accuracy = evaluate_weights(final["weights"], patterns, cfg)
    st = trainer.state
    status = "stopped" if st.stopped else "complete"
    report: dict[str, Any] = {
        "status": status,
        "stopped": st.stopped,
        "presentations": st.position,
        "epochs_completed": st.position // trainer.per_epoch,
        "accuracy": accuracy,
        "totals": {**st.totals.to_dict(), **trainer.journal.totals()},
        "stuck": trainer.stuck_summary(final["conductance_s"]),
        "mapping": trainer.mapping.to_dict(),
        "backend": trainer.backend.info().model_dump(mode="json"),
        "scheme": cfg.scheme.model_dump(mode="json") if cfg.scheme is not None else None,
        "history": trainer.journal.epochs(),
        "events": trainer.journal.events()[-50:],
        "w0_rms_error": trainer.journal.get_meta("w0_rms_error"),
        "wall_s_this_session": wall_s,
        "config": cfg.model_dump(mode="json"),
    }
    write_report(trainer.rundir, report, final, trainer, patterns)
    trainer.journal.set_meta("status", status)
    return report
