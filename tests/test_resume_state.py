"""What a resume must restore beyond the devices, and how durable `journal_sync: auto` is.

- A shuffled run killed in the middle of an epoch resumes with that epoch's order, not the
  pattern order: the resumed run presents the same patterns and sends the same plans as an
  uninterrupted one (on the simulator a different order would also regenerate a plan that
  differs from the journaled one, and the resume would stop).
- A plan a resume cannot confirm (VISA station: killed after its intent) is journaled
  `unknown` and counted in the per-run pulse budget, as it may have been delivered: the first
  checkpoint the resumed run writes counts every pulse of every applied or unknown plan.
- `run.journal_sync: auto` (the default) commits every intent with `synchronous=FULL` on an
  instrument, whose pulses cannot be replayed from a snapshot, and with `NORMAL` on the
  simulator. Seen by a trigger inside the journal, on the writer's connection.

Runs are killed at crash points (`protocols/crashpoints.py`), so none needs to finish.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing, nullcontext
from pathlib import Path

import pytest
from insitu_support import small_config
from test_crash_points import (
    PATTERNS,
    board_core,
    config,
    in_flight,
    killed,
    plans,
    rows,
    signatures,
    train,
)
from test_resume_integrity import FULL, NORMAL, SYNC_LOG, execute

from drivers.emu_array import make_array
from drivers.emu_scpi import Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from hil.insitu.rundir import RunDir

PER_EPOCH = 3


def shuffled_config(tmp: Path) -> Path:
    patterns = tmp / "three.txt"
    patterns.write_text(PATTERNS)
    training = {"patterns": str(patterns), "epochs": 3, "order": "shuffled"}
    return small_config(tmp, training=training, run={"checkpoint_every": 1})


def presented(run: Path) -> list[tuple[int, int]]:
    """(position, pattern) of every presentation the journal holds."""
    return [(p, k) for p, k in rows(run, "SELECT position, pattern FROM presentations ORDER BY 1")]


def test_a_resume_mid_epoch_keeps_the_epochs_shuffled_order(tmp_path: Path) -> None:
    cfg = shuffled_config(tmp_path)
    # Checkpoint writes: the first at position 0, then one after every presentation. The
    # reference dies writing the one after presentation 7; the run dies writing the one
    # after presentation 4, so it resumes from the checkpoint after presentation 3: epoch 1,
    # one presentation into its order.
    ref = tmp_path / "ref"
    killed(train(["--config", str(cfg), "--out", str(ref)], "checkpoint.write:9"), "reference")
    order = presented(ref)
    assert [p for p, _ in order] == list(range(8))
    epoch1 = [k for _, k in order[PER_EPOCH : 2 * PER_EPOCH]]
    assert sorted(epoch1) == [0, 1, 2]
    assert epoch1[1:] != [1, 2], "the shuffled order of epoch 1 must differ from 0, 1, 2 here"

    run = tmp_path / "run"
    killed(train(["--config", str(cfg), "--out", str(run)], "checkpoint.write:6"), "first")
    assert [p for p, _ in presented(run)] == list(range(5))
    # The resumed process re-runs presentation 4, then dies writing its third checkpoint
    # (the one after presentation 6).
    killed(train(["--resume", str(run)], "checkpoint.write:3"), "resumed")
    got = presented(run)
    assert got == order[: len(got)] and len(got) == 7
    mine, theirs = signatures(run), signatures(ref)
    assert len(mine) > 0 and mine == theirs[: len(mine)]


def test_an_unconfirmed_plan_counts_in_the_pulse_budget_of_the_resumed_run(
    tmp_path: Path,
) -> None:
    n = 9  # 3 x 3 glyphs on a 9 x 18 array
    station = Station(make_array(n, 2 * n, preset="epiram", seed=5), min_width_s=1e-9)
    run = tmp_path / "run"
    with ScpiEmulator(station) as emu:
        options = {
            "matrix_resource": emu.matrix_resource,
            "min_width_s": 1e-9,
            "array": f"{n}x{2 * n}",
        }
        backend = {"kind": "visa", "resource": emu.smu_resource, "options": options}
        cfg = config(tmp_path, backend=backend)
        # The first process dies at its 8th plan (past W0's programming), nothing of it sent;
        # the resumed one marks it unknown, goes on, and dies writing its second checkpoint.
        killed(train(["--config", str(cfg), "--out", str(run)], "plan.intent:8"), "intent")
        seq, *_ = in_flight(run)
        killed(train(["--resume", str(run)], "checkpoint.write:2"), "checkpoint")
    states = {s: state for s, _, _, state, *_ in plans(run)}
    assert states[seq] == "unknown"
    found = RunDir(run).latest_checkpoint()
    assert found is not None
    arrays, meta = found
    covered = int(meta["seq"])
    assert covered > seq  # the checkpoint covers the unknown plan
    budget = sum(
        pulses
        for s, _, _, state, pulses, *_ in plans(run)
        if s < covered and state in ("applied", "unknown")
    )
    unknown = next(p for s, _, _, _, p, *_ in plans(run) if s == seq)
    assert unknown > 0
    assert int(arrays["run_counts"].sum()) == budget


@pytest.mark.parametrize(("kind", "want"), [("serial", FULL), ("sim", NORMAL)])
def test_journal_sync_auto_is_full_on_an_instrument_and_normal_on_the_simulator(
    tmp_path: Path, kind: str, want: int
) -> None:
    run = tmp_path / "run"
    patterns = tmp_path / "three.txt"
    patterns.write_text(PATTERNS)
    with SerialEmulator(board_core()) if kind == "serial" else nullcontext() as emu:
        backend = {"kind": "serial", "port": emu.path} if emu is not None else {"kind": "sim"}
        cfg = small_config(
            tmp_path,
            training={"patterns": str(patterns), "epochs": 3},
            backend=backend,
            run={"checkpoint_every": 4},
        )
        killed(train(["--config", str(cfg), "--out", str(run)], "plan.intent:2"), "first")
        execute(run, *SYNC_LOG)
        killed(train(["--resume", str(run)], "plan.intent:4"), "resumed")
    with closing(sqlite3.connect(run / "journal.sqlite")) as con:
        log = con.execute("SELECT what, seq, sync FROM sync_log ORDER BY rowid").fetchall()
        (auto,) = con.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
    assert '"journal_sync": "auto"' in auto
    intents = [sync for what, _, sync in log if what == "intent"]
    marks = [sync for what, _, sync in log if what == "applied"]
    assert len(intents) >= 3 and marks
    assert set(intents) == {want}
    assert set(marks) == {NORMAL}
