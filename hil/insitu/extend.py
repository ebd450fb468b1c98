"""Extending a run: more epochs for a finished (or interrupted) run, continued where it stopped.

The epoch count is the one field of a run's resolved config that a resume may change. The
journal's record of the config the run started with (its origin, which a resume checks
config.json against) gets the new count first, then config.json (atomically), and the
journal records the change as an event; `resume_run` then continues from the latest
checkpoint. Every other field stays as the origin has it, so a config.json edited in any other
way is still refused. On the simulator the result is bit-identical to a run started with the
larger count (the checkpoint at the old end was taken before the final read, and nothing
else depends on the count).
"""

from __future__ import annotations

from pathlib import Path

from hil.insitu.journal import Journal, digest_of
from hil.insitu.run_config import validate_config
from hil.insitu.rundir import RunDir
from protocols.errors import InputError


def extend_run(path: str | Path, epochs: int) -> str | None:
    """Raise the run's epoch count to `epochs`; a note of what changed, or None if nothing."""
    rundir = RunDir.open(path)
    rundir.lock()  # config.json and the journal change: not while another process uses them
    try:
        return _extend(rundir, epochs)
    finally:
        rundir.release()


def _extend(rundir: RunDir, epochs: int) -> str | None:
    data = rundir.read_json("config.json")
    cfg = validate_config(data, str(rundir.config_path))
    had = cfg.training.epochs
    if epochs < had:
        raise InputError(
            f"--epochs {epochs}: the run in {rundir.path} already has {had} epochs; a resume "
            "can only add epochs"
        )
    data["training"]["epochs"] = epochs
    validate_config(data, "--epochs")  # the bound of the field holds
    with Journal(rundir.journal_path) as journal:
        if journal.has_origin():
            origin = journal.get_meta("config")
            if not isinstance(origin, dict) or digest_of(origin) != journal.get_meta(
                "config_digest"
            ):
                raise InputError(
                    f"{rundir.path}: the journal's copy of the config does not match its "
                    "digest; the run cannot be extended"
                )
            if origin["training"]["epochs"] != epochs:
                origin["training"]["epochs"] = epochs
                journal.record_origin(origin, journal.get_meta("protocol_text"))
        if epochs == had:
            return None
        rundir.write_json("config.json", data)
        table = journal.presentation_table()
        position = int(table["position"].max()) + 1 if table["position"].size else 0
        journal.record_event(position, "extend", f"epochs {had} -> {epochs}")
        journal.set_meta("status", "running")
    return f"extended from {had} to {epochs} epochs"
