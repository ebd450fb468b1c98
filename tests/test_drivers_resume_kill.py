"""SIGKILL `mrnn-hil train` on the pulse-board emulator mid-plan, resume, and find every batch
applied exactly once.

The board emulator runs in this process on a pseudo-terminal; `mrnn-hil train --backend
serial` runs in a child process. The board kills the child at chosen moments of a plan's
delivery (before the plan's first batch is staged; right after its first of two batches is
applied; right after its last batch is applied), so the resumed run meets each case the
journal alone cannot settle: not applied, partly applied, applied. After the last resume the
board's own log must hold every batch number exactly once, in order, and the journal's
tickets must name exactly those batches with exactly their pulse counts. On the VISA
station, which cannot say what it applied, the interrupted plan is journaled unknown.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from insitu_support import small_config
from test_resume_kill import launch

from drivers import board as B
from drivers.delivery import Ticket
from drivers.dryrun import DryRunLog, DryRunTransport
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_scpi import Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from drivers.errors import InstrumentError
from drivers.serial_backend import PulseBoardBackend
from hil.insitu.journal import Journal
from protocols.errors import InputError
from protocols.plan import PulseGroup, PulsePlan, PulseShape

PATTERNS = "[a]\n#.#\n.#.\n#.#\n\n[b]\n.#.\n###\n.#.\n\n[c]\n##.\n#..\n.##\n"
N = 9  # 3 x 3 glyphs: a 9 x 18 array


class KillingBoard(BoardCore):
    """The emulated board, which SIGKILLs the host at one chosen moment of a plan.

    `moment` is 'none' (on BEGIN of a plan's first batch, before staging), 'partial' (after
    EXEC of the first batch of a plan of two or more batches) or 'applied' (after EXEC of a
    plan's last batch, before the reply). Only update plans after `after_batch` qualify.
    """

    def __init__(self, journal: Path) -> None:
        super().__init__(make_array(N, 2 * N, preset="epiram", seed=5))
        self.journal = journal
        self.pid = 0
        self.moment = ""
        self.after_batch = 0
        self.fired: list[tuple[str, int]] = []

    def _pending_ticket(self) -> dict | None:
        pending = pending_update(self.journal)
        return None if pending is None or pending[0] is None else json.loads(pending[0])

    def _due(self, cmd: str, batch: int) -> bool:
        if not self.moment or not self.pid or batch <= self.after_batch:
            return False
        ticket = self._pending_ticket()
        if ticket is None:
            return False
        first, last = ticket["first"], ticket["first"] + len(ticket["pulses"]) - 1
        if self.moment == "none":
            return cmd == B.BEGIN and batch == first
        if self.moment == "partial":
            return cmd == B.EXEC and batch == first and last > first
        return cmd == B.EXEC and batch == last

    def handle(self, line: bytes) -> list[bytes]:
        try:
            _, body = B.decode(line)
            cmd, batch = body.split(" ")[0], int(body.split(" ")[1])
        except (B.FrameError, IndexError, ValueError):
            return super().handle(line)
        if cmd == B.BEGIN and self._due(cmd, batch):
            self._kill(batch)
            return []
        replies = super().handle(line)
        if cmd == B.EXEC and self._due(cmd, batch):
            self._kill(batch)
        return replies

    def _kill(self, batch: int) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.fired.append((self.moment, batch))
        self.moment, self.pid = "", 0


def pending_update(journal: Path) -> tuple[str | None] | None:
    """(ticket text,) of the update plan a running run has journaled but not marked applied."""
    if not journal.exists():
        return None
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute(
            "SELECT delivery FROM plans WHERE state = 'intent' AND kind = 'update'"
        ).fetchone()
    finally:
        con.close()
    return None if row is None else (row[0],)


def test_sigkill_mid_plan_on_the_pulse_board_applies_every_batch_exactly_once(
    tmp_path: Path,
) -> None:
    patterns = tmp_path / "three.txt"
    patterns.write_text(PATTERNS)
    run = tmp_path / "run"
    board = KillingBoard(run / "journal.sqlite")
    # (moment, earliest batch); None: during the next resume's own settling of the plan the
    # previous kill left pending (the 'none' plan is being resent when its last batch lands)
    moments: list[tuple[str, int | None]] = [
        ("partial", 0), ("none", 12), ("applied", None), ("partial", 30), ("none", 40),
    ]  # fmt: skip
    with SerialEmulator(board) as emu:
        cfg = small_config(
            tmp_path,
            training={"patterns": str(patterns), "epochs": 6},
            backend={"kind": "serial", "port": emu.path, "options": {"batch_groups": 1}},
        )
        args = ["train", "--config", str(cfg), "--out", str(run), "--quiet"]
        for moment, after in [*moments, ("", 0)]:
            # Otherwise past the batches a resume settles first: the kill meets a fresh plan.
            board.after_batch = (
                board.last_batch if after is None else max(after, board.last_batch + 4)
            )
            board.moment = moment
            proc = launch(args)
            board.pid = proc.pid if moment else 0
            _, err = proc.communicate(timeout=240)
            if moment:
                assert proc.returncode == -signal.SIGKILL, err.decode()
            else:
                assert proc.returncode == 0, err.decode()
            args = ["train", "--resume", str(run), "--quiet"]
        final_board = board.array.read()

    assert [m for m, _ in board.fired] == [m for m, _ in moments]  # every kill happened

    # The board's own log: each batch number once, in order, none skipped.
    log = board.log.entries
    assert [e.batch for e in log] == list(range(1, len(log) + 1))

    # The journal agrees: every plan applied, its tickets name exactly the board's batches
    # with exactly their pulses.
    con = sqlite3.connect(run / "journal.sqlite")
    try:
        rows = con.execute(
            "SELECT seq, state, delivery, pulses, plan FROM plans ORDER BY seq"
        ).fetchall()
        events = [m for (m,) in con.execute("SELECT message FROM events WHERE kind = 'resume'")]
    finally:
        con.close()
    assert all(state == "applied" for _, state, _, _, _ in rows)
    assert all(blob is None for *_, blob in rows)  # pending copies are dropped once applied
    journaled: list[tuple[int, int]] = []
    for _, _, delivery, pulses, _ in rows:
        ticket = json.loads(delivery)
        assert sum(ticket["pulses"]) == pulses
        journaled += [(ticket["first"] + k, p) for k, p in enumerate(ticket["pulses"])]
    assert journaled == [(e.batch, e.pulses) for e in log]

    # Each resume settled its plan as the kill left it; the kill during a settle left no
    # event for that resume, and the next one found the resent plan applied.
    expected = [
        f"partly applied (up to {board.fired[0][1]});",
        "applied before the interruption",
        f"partly applied (up to {board.fired[3][1]});",
        "not applied; sent now",
    ]
    assert len(events) == len(expected), (events, board.fired)
    for want, text in zip(expected, events, strict=True):
        assert want in text, (want, text)

    # The run's final read is the board's array; its pulse totals are the board's.
    with np.load(run / "final.npz") as f:
        np.testing.assert_array_equal(f["conductance_s"], final_board)
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "complete"
    assert sum(e.pulses for e in log) == sum(r[3] for r in rows)


def board_backend(tmp_path: Path, core: BoardCore, **kw: object) -> PulseBoardBackend:
    stream = tmp_path / f"stream-{len(list(tmp_path.glob('stream-*.txt')))}.txt"  # never reused
    log = DryRunLog(stream, "delivery tracking test")
    transport = DryRunTransport("board", log, core.handle)
    return PulseBoardBackend(transport, core.rows, core.cols, **kw)  # type: ignore[arg-type]


def two_group_plan(rows: int, cols: int) -> PulsePlan:
    up = np.zeros((rows, cols), dtype=np.int64)
    down = np.zeros((rows, cols), dtype=np.int64)
    up[0, 1], down[1, 0] = 3, 2
    return PulsePlan(
        rows=rows,
        cols=cols,
        groups=(
            PulseGroup(PulseShape(amplitude_v=1.5, width_s=1e-6), up),
            PulseGroup(PulseShape(amplitude_v=-1.5, width_s=1e-6), down),
        ),
    )


def test_delivery_status_and_completion_follow_the_boards_last_batch(tmp_path: Path) -> None:
    core = BoardCore(make_array(2, 3, seed=1))
    plan = two_group_plan(2, 3)
    with board_backend(tmp_path, core, batch_groups=1) as first:
        ticket = first.delivery_ticket(plan)
        assert (ticket.first, ticket.pulses) == (1, (3, 2))
        assert first.delivery_status(ticket).state == "none"
        # Deliver only the first batch (a process killed between the two).
        first._deliver(1, [plan.groups[0]], plan.bias)
    with board_backend(tmp_path, core, batch_groups=1) as second:
        found = second.delivery_status(ticket)
        assert (found.state, found.applied_batches, found.missing_batches) == (
            "partial",
            (1,),
            (2,),
        )
        assert second.complete_delivery(plan, ticket).state == "partial"
        assert second.delivery_status(ticket).state == "applied"
        assert second.complete_delivery(plan, ticket).state == "applied"  # sends nothing more
        # A board whose record is ahead of the journal, or a plan split differently, is refused.
        with pytest.raises(InstrumentError, match="disagree"):
            second.delivery_status(Ticket(7, (3,)))
    assert [(e.batch, e.pulses) for e in core.log.entries] == [(1, 3), (2, 2)]
    with board_backend(tmp_path, core) as whole, pytest.raises(InputError, match="batch_groups"):
        whole.complete_delivery(plan, Ticket(3, (3, 2)))


def test_ticket_from_journal_text_names_bad_content() -> None:
    assert Ticket.from_json(Ticket(4, (1, 2)).to_json()) == Ticket(4, (1, 2))
    with pytest.raises(InputError, match="plan 3: not a pulse-board delivery ticket"):
        Ticket.from_json({"kind": "board-batches", "first": "4", "pulses": []}, "plan 3")


def test_a_journal_from_before_delivery_tickets_is_upgraded_and_resolves_as_unknown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE plans (seq INTEGER PRIMARY KEY, position INTEGER NOT NULL, epoch INTEGER "
        "NOT NULL, kind TEXT NOT NULL, digest TEXT NOT NULL, groups INTEGER NOT NULL, pulses "
        "INTEGER NOT NULL, set_pulses INTEGER NOT NULL, reset_pulses INTEGER NOT NULL, devices "
        "INTEGER NOT NULL, energy_j REAL NOT NULL, state TEXT NOT NULL, t_intent REAL NOT NULL, "
        "t_applied REAL, replays INTEGER NOT NULL DEFAULT 0)"
    )
    con.execute("INSERT INTO plans VALUES (0, 0, 0, 'update', 'abc', 1, 5, 5, 0, 1, 0.0, "
                "'intent', 0.0, NULL, 0)")  # fmt: skip
    con.commit()
    con.close()
    with Journal(path) as journal:
        assert journal.plan(0) is not None
        assert journal.pending_delivery(0) is None  # no ticket: the unknown path
        plan = two_group_plan(2, 3)
        journal.record_intent(1, 1, 0, "update", plan, 0.0, delivery=Ticket(1, (3, 2)).to_json())
        pending = journal.pending_delivery(1)
        assert pending is not None and pending.plan.digest() == plan.digest()
        assert pending.ticket == Ticket(1, (3, 2)).to_json()
        journal.mark_applied(1)
        assert journal.pending_delivery(1) is None


class KillingStation(Station):
    """The emulated VISA station, which SIGKILLs the host after a pulse train of an update
    plan (so the kill lands between the plan's journaled intent and its applied mark)."""

    def __init__(self, journal: Path) -> None:
        super().__init__(make_array(N, 2 * N, preset="epiram", seed=5), min_width_s=1e-9)
        self.journal = journal
        self.pid = 0
        self.after_trains = 0

    def pulse(self, epoch: int, amp: float, width: float, count: int) -> None:
        super().pulse(epoch, amp, width, count)
        if self.pid and len(self.log) > self.after_trains and pending_update(self.journal):
            os.kill(self.pid, signal.SIGKILL)
            self.pid = 0


def test_sigkill_mid_plan_on_the_visa_station_leaves_the_plan_unknown(tmp_path: Path) -> None:
    """The SMU cannot say which device or plan its pulse count belongs to: the resumed run
    journals the interrupted plan as unknown (nothing is resent) and continues."""
    patterns = tmp_path / "three.txt"
    patterns.write_text(PATTERNS)
    run = tmp_path / "run"
    station = KillingStation(run / "journal.sqlite")
    with ScpiEmulator(station) as emu:
        cfg = small_config(
            tmp_path,
            training={"patterns": str(patterns), "epochs": 2},
            backend={
                "kind": "visa",
                "resource": emu.smu_resource,
                "options": {
                    "matrix_resource": emu.matrix_resource,
                    "min_width_s": 1e-9,
                    "array": f"{N}x{2 * N}",
                },
            },
        )
        station.after_trains = 40
        proc = launch(["train", "--config", str(cfg), "--out", str(run), "--quiet"])
        station.pid = proc.pid
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == -signal.SIGKILL, err.decode()
        done = launch(["train", "--resume", str(run), "--quiet"])
        _, err = done.communicate(timeout=240)
        assert done.returncode == 0, err.decode()
    con = sqlite3.connect(run / "journal.sqlite")
    try:
        states = [s for (s,) in con.execute("SELECT state FROM plans ORDER BY seq")]
        tickets = [t for (t,) in con.execute("SELECT delivery FROM plans")]
        events = [m for (m,) in con.execute("SELECT message FROM events WHERE kind = 'resume'")]
    finally:
        con.close()
    assert states.count("unknown") == 1 and set(states) == {"applied", "unknown"}
    assert all(t is None for t in tickets)  # the station gives no delivery tickets
    assert len(events) == 1 and "marked unknown" in events[0]
    assert json.loads((run / "report.json").read_text())["status"] == "complete"
