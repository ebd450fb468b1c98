"""The run journal (real SQLite) and the run directory (real files): durability and errors."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from hil.insitu.journal import Journal, JournalError
from hil.insitu.rundir import RunDir, RunDirError, pack, unpack
from protocols.plan import PulseGroup, PulsePlan, PulseShape

SET = PulseShape(amplitude_v=1.5, width_s=1e-6)
RESET = PulseShape(amplitude_v=-1.2, width_s=1e-6)


def a_plan(seed: int) -> PulsePlan:
    rng = np.random.default_rng(seed)
    return PulsePlan.from_groups(
        (3, 4),
        [
            PulseGroup(SET, rng.integers(0, 3, (3, 4))),
            PulseGroup(RESET, rng.integers(0, 2, (3, 4))),
        ],
    )


def test_plans_go_intent_then_applied_with_digest_and_counts(tmp_path: Path) -> None:
    plan = a_plan(0)
    with Journal(tmp_path / "j.sqlite") as j:
        j.record_intent(0, position=5, epoch=1, kind="update", plan=plan, energy_j=1e-9)
        assert [p.state for p in j.pending()] == ["intent"]
        j.mark_applied(0)
        assert j.pending() == []
        rec = j.plan(0)
        assert rec is not None and rec.digest == plan.digest() and rec.state == "applied"
        assert rec.pulses == plan.total_pulses and rec.position == 5
        with pytest.raises(JournalError, match="no plan 7"):
            j.mark_applied(7)
        # One sequence number, one plan: a second intent for seq 0 is refused.
        with pytest.raises(JournalError, match="UNIQUE"):
            j.record_intent(0, position=6, epoch=1, kind="update", plan=plan, energy_j=0.0)
    # Another connection (another process after a kill) sees exactly the committed state.
    raw = sqlite3.connect(tmp_path / "j.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT seq, state, set_pulses + reset_pulses FROM plans").fetchall() == [
        (0, "applied", plan.total_pulses)
    ]


def test_metrics_and_totals(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        for pos in range(3):
            j.record_presentation(
                position=pos,
                epoch=0,
                pattern=pos,
                loss=1.0 / (pos + 1),
                status="ok",
                accepted=pos != 1,
                clipped=False,
                pulses=10,
                energy_j=1e-9,
                max_abs_dw=0.01,
                plan_seq=None,
                did_read=True,
            )
        j.record_epoch(
            epoch=0, loss=0.5, accuracy={"0.10": 0.75}, pulses=30, energy_j=3e-9, refused=1, stuck=0
        )
        j.record_event(1, "refused", "update side_diverged refused")
        table = j.presentation_table()
        np.testing.assert_allclose(table["loss"], [1.0, 0.5, 1 / 3])
        assert j.totals()["refused_updates"] == 1
        assert j.epochs()[0]["accuracy"] == {"0.10": 0.75}
        assert j.events()[0]["kind"] == "refused"


def test_full_journal_is_a_clear_error_and_keeps_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.record_intent(0, position=0, epoch=0, kind="update", plan=a_plan(0), energy_j=0.0)
        j.mark_applied(0)
        # SQLite's page limit is a real SQLITE_FULL: the same error a full disk gives.
        pages = j._conn.execute("PRAGMA page_count").fetchone()[0]
        j._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(JournalError, match="full"):
            for pos in range(1, 10_000):
                j.record_event(pos, "filler", "x" * 2000)
    with Journal(path) as j:
        assert [p.state for p in j.plans()] == ["applied"]


def test_unwritable_directory_is_refused_with_its_path(tmp_path: Path) -> None:
    # A path below a regular file can never be created, whoever runs the test (even root).
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    target = blocker / "run"
    with pytest.raises(RunDirError, match=str(target)):
        RunDir.create(target)
    with pytest.raises(JournalError, match="journal"):
        Journal(target / "journal.sqlite")
    if not os.access(tmp_path, os.W_OK) or os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            with pytest.raises(RunDirError, match=r"not writable|cannot create"):
                RunDir.create(locked / "run")
        finally:
            locked.chmod(stat.S_IRWXU)


def test_checkpoints_are_atomic_pickle_free_and_pruned(tmp_path: Path) -> None:
    rd = RunDir.create(tmp_path / "run")
    with pytest.raises(RunDirError, match="already holds a run"):
        rd.write_json("config.json", {"seed": 1})
        RunDir.create(tmp_path / "run")
    gen = np.random.default_rng(3)
    meta = {
        "position": 7,
        "backend": {
            "g": np.arange(6.0).reshape(2, 3),
            "rng": gen.bit_generator.state,
            "t": (1, 2.5, None),
            "n": np.int64(4),
            "inf": float("inf"),
        },
    }
    for pos in (0, 7, 9):
        rd.save_checkpoint(pos, {"g_est": np.full((2, 3), pos, dtype=float)}, meta)
    assert [p.name for p in rd.checkpoints()] == ["ckpt-0000000007.npz", "ckpt-0000000009.npz"]
    found = rd.latest_checkpoint()
    assert found is not None
    arrays, loaded = found
    assert arrays["g_est"][0, 0] == 9
    np.testing.assert_array_equal(loaded["backend"]["g"], meta["backend"]["g"])  # type: ignore[index]
    assert loaded["backend"]["rng"] == gen.bit_generator.state
    assert loaded["backend"]["t"] == (1, 2.5, None) and loaded["backend"]["inf"] == float("inf")
    # No temporary files are left behind.
    assert not [p for p in rd.checkpoint_dir.iterdir() if p.name.endswith(".tmp")]
    # The generator state restores exactly.
    g2 = np.random.default_rng()
    g2.bit_generator.state = loaded["backend"]["rng"]
    assert g2.random() == gen.random()
    # A damaged newest checkpoint (truncated zip) falls back to the one before it.
    newest = rd.checkpoints()[-1]
    newest.write_bytes(newest.read_bytes()[:200])
    found = rd.latest_checkpoint()
    assert found is not None and found[0]["g_est"][0, 0] == 7
    with pytest.raises(RunDirError, match=f"cannot read {newest}"):
        rd.load_checkpoint(newest)


def test_pack_refuses_objects_it_cannot_store_without_pickle() -> None:
    with pytest.raises(TypeError, match="object"):
        pack({"x": object()}, {})
    arrays: dict[str, np.ndarray] = {}
    tree = pack([np.zeros(2), {"k": 1}], arrays)
    assert unpack(tree, arrays)[1] == {"k": 1}
