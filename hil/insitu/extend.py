"""Extending a run: more epochs for a finished (or interrupted) run, continued where it stopped.

The epoch count is the one field of a run's resolved config that a resume may change. The
run directory's config is rewritten with the new count (atomically) and the journal records
the change; `resume_run` then continues from the latest checkpoint. On the simulator the
result is bit-identical to a run started with the larger count (the checkpoint at the old
end was taken before the final read, and nothing else depends on the count).
"""

from __future__ import annotations

from pathlib import Path

from hil.insitu.journal import Journal
from hil.insitu.run_config import validate_config
from hil.insitu.rundir import RunDir
from protocols.errors import InputError


def extend_run(path: str | Path, epochs: int) -> str | None:
    """Raise the run's epoch count to `epochs`; a note of what changed, or None if nothing."""
    rundir = RunDir.open(path)
    data = rundir.read_json("config.json")
    cfg = validate_config(data, str(rundir.config_path))
    had = cfg.training.epochs
    if epochs < had:
        raise InputError(
            f"--epochs {epochs}: the run in {rundir.path} already has {had} epochs; a resume "
            "can only add epochs"
        )
    if epochs == had:
        return None
    data["training"]["epochs"] = epochs
    validate_config(data, "--epochs")  # the bound of the field holds
    rundir.write_json("config.json", data)
    with Journal(rundir.journal_path) as journal:
        table = journal.presentation_table()
        position = int(table["position"].max()) + 1 if table["position"].size else 0
        journal.record_event(position, "extend", f"epochs {had} -> {epochs}")
        journal.set_meta("status", "running")
    return f"extended from {had} to {epochs} epochs"
