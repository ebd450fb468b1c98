"""A resume trusts nothing the journal cannot vouch for, and the journal is as durable as the
run config says.

- A plan regenerated on resume (simulator) that differs from the journaled one stops the
  resume: nothing of it is sent or marked.
- A journaled copy of a plan (pulse board: the pending plan a resume would send, and the
  applied plans a checkpoint does not yet cover, which the pulse budget counts) that does not
  match the digest its intent recorded stops the resume.
- `run.journal_sync: full` has SQLite run `synchronous=FULL` for every intent commit, on
  start and on resume, and `NORMAL` for the applied marks (docs/in-situ.md); `normal` keeps
  every commit at NORMAL. Seen by a trigger inside the journal, on the writer's connection.

Each run is killed at a crash point (`protocols/crashpoints.py`) so that no run needs to
finish (the report's pictures are the slow part of a run).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from test_crash_points import (
    board_config,
    board_core,
    config,
    in_flight,
    killed,
    plans,
    train,
)

from drivers.emu_serial import SerialEmulator
from hil.insitu.journal import Journal, JournalError, plan_from_bytes, plan_to_bytes
from protocols.plan import PulseGroup, PulsePlan, PulseShape


def execute(run: Path, *sql: str) -> None:
    with closing(sqlite3.connect(run / "journal.sqlite", isolation_level=None)) as con:
        for statement in sql:
            con.execute(statement)


def forge(run: Path, seq: int) -> None:
    """Replace the journaled copy of plan `seq` by a plan with one more pulse."""
    with closing(sqlite3.connect(run / "journal.sqlite", isolation_level=None)) as con:
        (blob,) = con.execute("SELECT plan FROM plans WHERE seq = ?", (seq,)).fetchone()
        plan = plan_from_bytes(blob)
        counts = plan.groups[0].counts.copy()
        counts.flat[0] += 1
        groups = (PulseGroup(plan.groups[0].shape, counts), *plan.groups[1:])
        forged = PulsePlan(rows=plan.rows, cols=plan.cols, groups=groups, bias=plan.bias)
        con.execute("UPDATE plans SET plan = ? WHERE seq = ?", (plan_to_bytes(forged), seq))


def test_a_regenerated_plan_that_differs_from_the_journal_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = config(tmp_path, run={"checkpoint_every": 4})
    killed(train(["--config", str(cfg), "--out", str(run)], "plan.intent:9"), "intent")
    seq, *_ = in_flight(run)
    execute(run, f"UPDATE plans SET digest = 'f' || substr(digest, 2) WHERE seq = {seq}")
    done = train(["--resume", str(run)])
    assert done.returncode == 2, done.stderr
    assert f"resume diverged from the journal at plan {seq}" in done.stderr
    assert "Traceback" not in done.stderr
    assert plans(run)[seq][3] == "intent" and plans(run)[-1][0] == seq  # nothing marked or added


@pytest.mark.parametrize("where", ["pending", "applied"])
def test_a_journaled_copy_that_does_not_match_its_digest_is_refused(
    tmp_path: Path, where: str
) -> None:
    """'pending': the plan left in intent, which the resume would send to the board;
    'applied': a plan applied after the last checkpoint, which the resume counts in the
    run's pulse budget (killed half-way through the checkpoint that would have covered it)."""
    core, run = board_core(), tmp_path / "run"
    with SerialEmulator(core) as emu:
        cfg = board_config(tmp_path, emu.path)
        arm = "plan.intent:9" if where == "pending" else "checkpoint.write:3"
        killed(train(["--config", str(cfg), "--out", str(run)], arm), arm)
        if where == "pending":
            seq, *_ = in_flight(run)
        else:
            seq = plans(run)[-1][0]
            assert plans(run)[-1][3] == "applied"
        forge(run, seq)
        sent = core.last_batch
        done = train(["--resume", str(run)])
    assert done.returncode == 2, done.stderr
    assert f"plan {seq}: the journaled copy does not match its digest" in done.stderr
    assert "Traceback" not in done.stderr
    assert core.last_batch == sent  # nothing was sent


def test_the_journal_checks_every_kept_copy_against_its_digest(tmp_path: Path) -> None:
    counts = np.zeros((2, 3), dtype=np.int64)
    counts[0, 1] = 3
    plan = PulsePlan(
        rows=2, cols=3, groups=(PulseGroup(PulseShape(amplitude_v=1.5, width_s=1e-6), counts),)
    )
    with Journal(tmp_path / "journal.sqlite") as journal:
        journal.record_intent(0, 0, 0, "update", plan, 0.0, keep=True)
        journal.record_intent(1, 0, 0, "update", plan, 0.0, delivery={"kind": "x"})
        assert journal.kept_plan(0) is not None
    forge(tmp_path, 0)
    forge(tmp_path, 1)
    with Journal(tmp_path / "journal.sqlite") as journal:
        with pytest.raises(JournalError, match="plan 0: the journaled copy does not match"):
            journal.kept_plan(0)
        with pytest.raises(JournalError, match="plan 1: the journaled copy does not match"):
            journal.pending_delivery(1)


SYNC_LOG = (
    "CREATE TABLE sync_log (what TEXT NOT NULL, seq INTEGER NOT NULL, sync INTEGER NOT NULL)",
    "CREATE TRIGGER log_intent AFTER INSERT ON plans BEGIN INSERT INTO sync_log "
    "SELECT 'intent', NEW.seq, synchronous FROM pragma_synchronous; END",
    "CREATE TRIGGER log_mark AFTER UPDATE OF state ON plans BEGIN INSERT INTO sync_log "
    "SELECT NEW.state, NEW.seq, synchronous FROM pragma_synchronous; END",
)
FULL, NORMAL = 2, 1


@pytest.mark.parametrize("mode", ["full", "normal"])
def test_journal_sync_sets_the_pragma_of_every_intent_commit(tmp_path: Path, mode: str) -> None:
    run = tmp_path / "run"
    cfg = config(tmp_path, run={"checkpoint_every": 4, "journal_sync": mode})
    killed(train(["--config", str(cfg), "--out", str(run)], "plan.intent:2"), "first")
    execute(run, *SYNC_LOG)
    # The resumed run re-sends the plans it journaled, then journals four new ones.
    killed(train(["--resume", str(run)], "plan.intent:5"), "resumed")
    with closing(sqlite3.connect(run / "journal.sqlite")) as con:
        log = con.execute("SELECT what, seq, sync FROM sync_log ORDER BY rowid").fetchall()
        (journal_mode,) = con.execute("PRAGMA journal_mode").fetchone()
    assert journal_mode == "wal"
    intents = [(seq, sync) for what, seq, sync in log if what == "intent"]
    marks = [(seq, sync) for what, seq, sync in log if what == "applied"]
    assert [seq for seq, _ in intents] == [2, 3, 4, 5, 6]
    assert [seq for seq, _ in marks] == [0, 1, 2, 3, 4, 5]  # replayed plans end applied
    want = FULL if mode == "full" else NORMAL
    assert {sync for _, sync in intents} == {want}
    assert {sync for _, sync in marks} == {NORMAL}
