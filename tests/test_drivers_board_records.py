"""The pulse-board driver refuses to go on when the board's own record of what it applied
disagrees with the host's, for each of its consistency checks, on an emulated board that
misreports (`drivers.faults.BoardGlitches`) while the pulses themselves reach its array.

The checks: the DONE of an executed batch names the wrong pulse count; after a lost DONE,
LAST? names a batch ahead of the host, or the right batch with the wrong pulse count; on
resume, LAST? names a batch outside the journaled plan, or the plan's batch with the wrong
pulse count. And what `mrnn-hil train` tells the user then: not to resume as if nothing
were wrong, since a resume asks the same record and stops again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from drivers import open_backend
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_serial import SerialEmulator
from drivers.errors import RecordMismatch
from drivers.faults import BoardGlitches
from drivers.serial_backend import PulseBoardBackend
from hil.cli import main
from protocols.plan import PulseGroup, PulsePlan, PulseShape

SHAPE = (2, 3)
PULSE = PulseShape(amplitude_v=2.0, width_s=1e-7)


@pytest.fixture
def rig() -> Iterator[tuple[PulseBoardBackend, BoardCore]]:
    core = BoardCore(make_array(*SHAPE, preset="ideal", seed=1))
    with (
        SerialEmulator(core) as emu,
        open_backend("serial", emu.path, *SHAPE, timeout_s=0.2, retries=3) as be,
    ):
        assert isinstance(be, PulseBoardBackend)
        yield be, core


def plan(pulses: int = 5) -> PulsePlan:
    counts = np.zeros(SHAPE, dtype=np.int64)
    counts[1, 2] = pulses
    return PulsePlan.from_groups(SHAPE, [PulseGroup(PULSE, counts)])


def test_a_lost_done_is_settled_by_the_boards_record_and_applied_once(
    rig: tuple[PulseBoardBackend, BoardCore],
) -> None:
    """The glitch itself: the batch is applied, its DONE never comes, and an honest
    record settles it (the checks below stay quiet when the record agrees)."""
    be, core = rig
    core.glitches = BoardGlitches(lose_done=1)
    be.apply(plan())
    assert core.lost_done == 1 and be.stats.resolved_by_last == 1
    assert [(b.batch, b.pulses) for b in core.log.entries] == [(1, 5)]
    assert core.array.pulse_counts[1, 2] == 5


def test_a_done_with_the_wrong_pulse_count_is_refused(
    rig: tuple[PulseBoardBackend, BoardCore],
) -> None:
    be, core = rig
    core.glitches = BoardGlitches(done_pulses_off=1)
    wrong = r"confirmed batch 1 with 6 pulses, expected batch 1 with 5"
    with pytest.raises(RecordMismatch, match=wrong):
        be.apply(plan())
    assert int(be.pulse_counts.sum()) == 0  # the host counts nothing it cannot vouch for


def test_a_board_ahead_of_the_host_is_refused(rig: tuple[PulseBoardBackend, BoardCore]) -> None:
    be, core = rig
    core.glitches = BoardGlitches(lose_done=1, last_batch_ahead=2)
    with pytest.raises(RecordMismatch, match=r"board reports batch 3 applied, ahead of this host"):
        be.apply(plan())
    assert len(core.log.entries) == 1  # never sent again


def test_the_last_batch_with_the_wrong_pulse_count_is_refused(
    rig: tuple[PulseBoardBackend, BoardCore],
) -> None:
    be, core = rig
    core.glitches = BoardGlitches(lose_done=1, last_pulses_off=-2)
    with pytest.raises(RecordMismatch, match=r"batch 1: board applied 3 pulses, expected 5"):
        be.apply(plan())
    assert len(core.log.entries) == 1


def test_on_resume_a_record_outside_the_journaled_plan_is_refused(
    rig: tuple[PulseBoardBackend, BoardCore],
) -> None:
    be, core = rig
    ticket = be.delivery_ticket(plan())
    be.apply(plan())
    core.glitches = BoardGlitches(last_batch_ahead=4)
    outside = r"batch 5 applied last, but the journaled plan is batches 1-1"
    with pytest.raises(RecordMismatch, match=outside):
        be.delivery_status(ticket)


def test_on_resume_the_plans_batch_with_the_wrong_pulse_count_is_refused(
    rig: tuple[PulseBoardBackend, BoardCore],
) -> None:
    be, core = rig
    ticket = be.delivery_ticket(plan())
    be.apply(plan())
    assert be.delivery_status(ticket).applied == 1  # the honest record settles it
    core.glitches = BoardGlitches(last_pulses_off=1)
    wrong = r"batch 1: board applied 6 pulses, the journal expects 5"
    with pytest.raises(RecordMismatch, match=wrong):
        be.delivery_status(ticket)


def test_train_does_not_advise_a_resume_that_meets_the_same_disagreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A board whose record of its last batch is off: the run stops with exit code 1 and
    names the disagreement; it does not offer `--resume` as the way on, and a resume
    indeed stops on the same record."""
    patterns = tmp_path / "two.txt"
    patterns.write_text("[a]\n#.\n.#\n\n[b]\n.#\n#.\n")
    config = tmp_path / "serial.yaml"
    config.write_text("backend:\n  options:\n    timeout_s: 0.2\n    retries: 3\n")
    core = BoardCore(
        make_array(4, 8, preset="ideal", seed=1),
        glitches=BoardGlitches(lose_done=1, last_pulses_off=1),
    )
    out = tmp_path / "run"
    with SerialEmulator(core) as emu:
        args = ["train", "--epochs", "1", "--quiet", "--preset", "ideal", "--patterns"]
        args += [str(patterns), "--out", str(out), "--backend", "serial", "--port", emu.path]
        assert main([*args, "--config", str(config)]) == 1
        err = capsys.readouterr().err
        assert "board applied" in err and "expected" in err, err
        assert "continue with" not in err, err
        assert f"`mrnn-hil train --resume {out}` asks the instrument's record first" in err
        assert "stops on this disagreement again" in err
        applied = len(core.log.entries)
        assert main(["train", "--resume", str(out), "--quiet"]) == 1
        again = capsys.readouterr().err
        assert "the journal expects" in again, again
        assert len(core.log.entries) == applied  # the resume sent no batch
