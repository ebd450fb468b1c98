"""A training run from start (or resume) to report: the glue between config, backend and loop.

`start_run` validates everything (config, patterns, protocol, the safety envelope), opens the
backend and checks that it can do what the run will ask (bias schemes, widths, amplitudes)
before it creates the run directory and before the first pulse; the journal keeps a digest
of the resolved config and of the protocol file. `resume_run` reloads the resolved config of
a run directory, refuses it if it or the protocol file differs from what the run started
with, and continues it; both end in `finish_run` (final.npz, evaluation against the Hopfield
baselines, report, and the verdict: complete, stopped, or refused when too many updates
were refused by a safety limit).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivers.errors import RecordMismatch
from hil.insitu.backends import (
    READ_OPTION,
    DeviceModel,
    announce_raised,
    check_backend,
    device_model,
    open_backend,
    raised_note,
)
from hil.insitu.journal import Journal, SyncMode
from hil.insitu.mapping import WeightMapping, make_mapping
from hil.insitu.pulse_planner import UpdatePlanner, programming_scheme
from hil.insitu.run_config import RunConfig, validate_config
from hil.insitu.rundir import RunDir
from hil.insitu.trainer import ControllerState, InSituTrainer
from hil.insitu.workload import check_workload
from hil.network.evaluation import nearest_pattern, pineda_recall, score
from hil.network.hopfield import hebbian, recall, storkey
from hil.network.patterns import PatternSet, patterns_from_spec, test_set
from protocols.backend import BackendError, CrossbarBackend
from protocols.errors import InputError
from protocols.protocol_file import parse_protocol_text
from protocols.spec import Scheme

Progress = Callable[[ControllerState, int], None]
#: Where a run says what a user must see before it starts (a limit raised on purpose).
Notify = Callable[[str], None]

STREAM_FINAL_EVAL = 6


@dataclass
class RunOutcome:
    rundir: RunDir
    report: dict[str, Any]
    resumed: str | None = None


def load_pattern_set(cfg: RunConfig) -> PatternSet:
    return patterns_from_spec(cfg.training.patterns)


def resolve(cfg: RunConfig) -> tuple[RunConfig, DeviceModel, PatternSet]:
    """Validate every input and pin scheme, limits and read voltage into the config (no I/O
    to arrays): the resolved config alone says what the run may send."""
    patterns = load_pattern_set(cfg)
    check_workload(cfg, patterns)
    model = device_model(cfg)
    env = model.envelope
    backend = cfg.backend.model_copy(
        update={"options": {**cfg.backend.options, READ_OPTION: env.read_v}}
    )
    resolved = cfg.model_copy(
        update={
            "scheme": env.scheme,
            "limits": env.pinned_limits(),
            "response": model.response,
            "backend": backend,
        }
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


def _extra_schemes(cfg: RunConfig, model: DeviceModel) -> list[Scheme]:
    """The schemes the run uses besides its own: the write-verify of the initial programming."""
    if cfg.programming.method != "write_verify":
        return []
    prog = cfg.programming
    return [programming_scheme(prog.tolerance, prog.max_iterations, model.limits)]


def _open(cfg: RunConfig, model: DeviceModel, patterns: PatternSet) -> CrossbarBackend:
    """The backend, refused (and closed) if it cannot do what the run will ask of it."""
    rows, cols = _mapping(cfg, model, patterns).shape
    backend = open_backend(cfg, rows, cols, model.envelope)
    check_backend(backend, model.envelope, _extra_schemes(cfg, model))
    return backend


def _journal_limits(journal: Journal, model: DeviceModel, position: int) -> None:
    """The effective limits in the journal's meta; a raised one also as an event."""
    env = model.envelope
    journal.set_meta("limits", env.limits.model_dump(mode="json"))
    journal.set_meta("read_v", env.read_v)
    journal.set_meta("limits_raised", [c.describe() for c in env.raised])
    note = raised_note(env)
    if note is not None:
        journal.record_event(position, "limits", note)


def _protocol_fields(cfg: RunConfig) -> Callable[[str], dict[str, Any]]:
    """Protocol text -> plain data, for naming the fields a changed protocol file changed."""
    source = str(cfg.protocol)
    suffix = Path(source).suffix.lower()

    def fields(text: str) -> dict[str, Any]:
        return parse_protocol_text(text, source, suffix).model_dump(mode="json")

    return fields


def check_origin(rundir: RunDir, journal: Journal, cfg: RunConfig, model: DeviceModel) -> None:
    """Refuse to resume a run whose resolved config or protocol file changed since it began.

    A journal without a recorded origin and without a plan (killed before its first pulse)
    adopts the present config: nothing was sent under another one.
    """
    config = cfg.model_dump(mode="json")
    if not journal.has_origin():
        if journal.max_seq() >= 0:
            raise InputError(
                f"{rundir.path}: the journal keeps no digest of the config this run started "
                "with, so config.json cannot be verified; start a new run"
            )
        journal.record_origin(config, model.protocol_text)
        return
    changes = journal.origin_changes(config, model.protocol_text, _protocol_fields(cfg))
    if changes:
        raise InputError(
            f"{rundir.path}: refusing to resume: {'; '.join(changes)} since the run started "
            "(the journal's meta table keeps the original config); restore them, or start a "
            "new run"
        )


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
        backend = _open(cfg, model, patterns)
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


def start_run(
    cfg: RunConfig,
    out: str | Path,
    progress: Progress | None = None,
    notify: Notify | None = None,
) -> RunOutcome:
    resolved, model, patterns = resolve(cfg)
    announce_raised(model.envelope, notify)
    # The array first: an instrument that cannot be opened, or cannot do what the run asks,
    # leaves no run directory behind.
    backend = _open(resolved, model, patterns)
    journal: Journal | None = None
    rundir: RunDir | None = None
    try:
        rundir = RunDir.create(out)
        # The resolved config next: from here on the directory is a run that --resume continues.
        config = resolved.model_dump(mode="json")
        rundir.write_json("config.json", config)
        journal = Journal(rundir.journal_path, sync=journal_sync(resolved))
        journal.record_origin(config, model.protocol_text)
        journal.set_meta("status", "running")
        journal.set_meta("device_model", model.source)
        _journal_limits(journal, model, 0)
        trainer = _build(resolved, model, patterns, rundir, journal, progress, backend)
        t0 = time.perf_counter()
        with _resumable(rundir):
            trainer.start()
            trainer.run()
            report = finish_run(trainer, patterns, time.perf_counter() - t0)
    except BaseException:
        _mark_interrupted(journal)
        raise
    finally:
        backend.close()
        if journal is not None:
            journal.close()
        if rundir is not None:
            rundir.release()
    return RunOutcome(rundir, report)


def _mark_interrupted(journal: Journal | None) -> None:
    """A run that ends on an exception or a signal is never left saying "running"."""
    if journal is not None:
        with contextlib.suppress(Exception):
            journal.set_meta("status", "interrupted")


@contextmanager
def _resumable(rundir: RunDir) -> Iterator[None]:
    """An instrument failure mid-run says how to continue (the journal holds every plan);
    an instrument whose own record disagrees with the journal's gets no `--resume` advice:
    a resume starts by asking that record and would stop on the same disagreement."""
    try:
        yield
    except RecordMismatch as exc:
        raise RecordMismatch(
            f"{exc}; nothing more was sent. `mrnn-hil train --resume {rundir.path}` asks the "
            "instrument's record first and stops on this disagreement again while the record "
            "stays as it is: find out why it differs (another host or another board on the "
            "port, a firmware fault) before resuming or starting a new run"
        ) from exc
    except BackendError as exc:
        raise BackendError(
            f"{exc}; every plan sent is journaled: continue with "
            f"`mrnn-hil train --resume {rundir.path}`"
        ) from exc


def load_run_config(rundir: RunDir) -> RunConfig:
    return validate_config(rundir.read_json("config.json"), f"{rundir.config_path}")


def resume_run(
    path: str | Path, progress: Progress | None = None, notify: Notify | None = None
) -> RunOutcome:
    rundir = RunDir.open(path)
    rundir.lock()  # one process per run: a second one is told who holds it
    try:
        rundir.check_writable()
        rundir.remove_temporaries()  # of a write the previous process was killed in
        cfg = load_run_config(rundir)
        cfg, model, patterns = resolve(cfg)
        journal = Journal(rundir.journal_path, sync=journal_sync(cfg))
    except BaseException:
        rundir.release()
        raise
    try:
        check_origin(rundir, journal, cfg, model)
        announce_raised(model.envelope, notify)
        backend = _open(cfg, model, patterns)
    except BaseException:
        journal.close()
        rundir.release()
        raise
    try:
        trainer = _build(cfg, model, patterns, rundir, journal, progress, backend)
    except BaseException:
        backend.close()
        journal.close()
        rundir.release()
        raise
    t0 = time.perf_counter()
    try:
        journal.set_meta("status", "running")
        _journal_limits(journal, model, trainer.state.position)
        with _resumable(rundir):
            note = trainer.resume()
            trainer.run()
            report = finish_run(trainer, patterns, time.perf_counter() - t0)
    except BaseException:
        _mark_interrupted(journal)
        raise
    finally:
        trainer.backend.close()
        journal.close()
        rundir.release()
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
    totals = {**st.totals.to_dict(), **trainer.journal.totals()}
    refused = refusal_verdict(totals, cfg.loop.max_limit_refused_share, trainer.journal)
    status = "stopped" if st.stopped else "refused" if refused else "complete"
    report: dict[str, Any] = {
        "status": status,
        "stopped": st.stopped,
        "refused": refused,
        "presentations": st.position,
        "epochs_completed": st.position // trainer.per_epoch,
        "accuracy": accuracy,
        "totals": totals,
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


def refusal_verdict(totals: dict[str, Any], share: float, journal: Journal) -> str | None:
    """Why the run counts as refused (too many updates refused by a safety limit), or None."""
    by_limit, presented = int(totals["refused_by_limit"]), int(totals["presentations"])
    if presented == 0 or by_limit / presented <= share:
        return None
    first = next(
        (e["message"] for e in journal.events() if e["message"].startswith("plan refused")), ""
    )
    return (
        f"{by_limit} of {presented} updates ({by_limit / presented:.0%}) were refused by a "
        f"safety limit, more than loop.max_limit_refused_share = {share:g}"
        + (f"; first: {first.removeprefix('plan refused: ')}" if first else "")
    )
