"""The run journal (real SQLite) and the run directory (real files): durability and errors."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from collections.abc import Iterator
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


def _refuses_files(folder: Path) -> bool:
    """True when this process cannot create a file in `folder` (a probe it removes again)."""
    probe = folder / f".mrnn-hil-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError:
        return True
    os.close(fd)
    probe.unlink()
    return False


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """An existing directory this process cannot create files in.

    A directory without write permission, when that stops this process. Root (with
    CAP_DAC_OVERRIDE) writes through permission bits, so it gets a sysfs directory instead:
    the kernel refuses to create files there whoever asks (EPERM, or EROFS where /sys is
    mounted read-only).
    """
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if _refuses_files(locked):
            yield locked
            return
    finally:
        locked.chmod(stat.S_IRWXU)
    for candidate in (Path("/sys/kernel"), Path("/sys")):
        if candidate.is_dir() and _refuses_files(candidate):
            yield candidate
            return
    pytest.skip("root without a sysfs mount: no directory here refuses root's files")


def test_unwritable_directory_is_refused_with_its_path(
    tmp_path: Path, unwritable_dir: Path
) -> None:
    # A path below a regular file can never be created, whoever runs the test (even root).
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    target = blocker / "run"
    with pytest.raises(RunDirError, match=str(target)):
        RunDir.create(target)
    with pytest.raises(JournalError, match="journal"):
        Journal(target / "journal.sqlite")
    # An existing directory that refuses new files: a run below it, or in it, is refused
    # with the path and the reason, and so is a journal in it.
    for path in (unwritable_dir / "run", unwritable_dir):
        with pytest.raises(
            RunDirError, match=f"cannot create run directory {re.escape(str(path))}: "
        ):
            RunDir.create(path)
    journal = unwritable_dir / "journal.sqlite"
    with pytest.raises(
        JournalError, match=f"journal {re.escape(str(journal))}: the run directory is not writable"
    ):
        Journal(journal)
    assert not journal.exists()


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
