"""hil.insitu.programming.program with a caller's `send`: one write-verify loop for journaling."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hil.insitu.backends import device_model
from hil.insitu.programming import ProgramResult, program
from hil.insitu.run_config import validate_config
from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulsePlan
from protocols.response import DeviceResponse
from protocols.spec import PulsePair, WriteVerifyScheme
from sim_backend.crossbar import SimulatedCrossbar

ROOMY = SafetyLimits(  # room for EpiRAM's +5 V / -3 V pulses and their ISPP steps
    max_set_v=7.5, max_reset_v=4.5, max_energy_per_update_j=1.0, compliance_a=0.1
)
SCHEME = WriteVerifyScheme(
    kind="write_verify",
    tolerance_frac=0.03,
    max_iterations=60,
    pulses_per_iteration="model",
    max_pulses_per_iteration=16,
)


def _setup(array: SimulatedCrossbar) -> tuple[DeviceResponse, PulsePair, np.ndarray]:
    """The run's device model of the array's preset (mean response, nominal pulses), targets."""
    model = device_model(validate_config({"backend": {"preset": array.config.name}}))
    response, pulses = model.response, model.pulses
    span = response.g_max_s - response.g_min_s
    targets = response.g_min_s + span * np.random.default_rng(3).uniform(0.2, 0.8, (3, 5))
    return response, pulses, targets


class SqliteJournal:
    """A minimal journaled send: intent row, apply, applied row (real SQLite, real file)."""

    def __init__(self, path: Path, array: SimulatedCrossbar) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE plans (seq INTEGER PRIMARY KEY, digest TEXT, pulses INTEGER, state TEXT)"
        )
        self.array = array
        self.seq = 0

    def send(self, plan: PulsePlan) -> None:
        self.db.execute(
            "INSERT INTO plans VALUES (?, ?, ?, 'intent')",
            (self.seq, plan.digest(), plan.total_pulses),
        )
        self.db.commit()
        self.array.apply(plan)
        self.db.execute("UPDATE plans SET state = 'applied' WHERE seq = ?", (self.seq,))
        self.db.commit()
        self.seq += 1

    def rows(self) -> list[tuple[int, str, int, str]]:
        return list(self.db.execute("SELECT seq, digest, pulses, state FROM plans ORDER BY seq"))


def _program(array: SimulatedCrossbar, **kwargs: object) -> ProgramResult:
    response, pulses, targets = _setup(array)
    return program(
        array, targets, scheme=SCHEME, pulses=pulses, response=response, limits=ROOMY, **kwargs
    )


def test_a_journaling_send_delivers_every_plan_once_and_matches_the_default(
    tmp_path: Path,
) -> None:
    with SimulatedCrossbar(3, 5, preset="epiram", seed=4, limits=ROOMY) as plain:
        reference = _program(plain)
        plain_final = plain.read()
    with SimulatedCrossbar(3, 5, preset="epiram", seed=4, limits=ROOMY) as array:
        journal = SqliteJournal(tmp_path / "journal.sqlite", array)
        result = _program(array, send=journal.send)
        rows = journal.rows()
        counts = array.pulse_counts
        final = array.read()
    assert result.status == "converged"
    assert len(rows) == result.iterations > 1
    assert [r[0] for r in rows] == list(range(result.iterations))
    assert all(r[3] == "applied" for r in rows)
    assert sum(r[2] for r in rows) == int(counts.sum()) == int(result.pulses.sum())
    # the same seed through the default path and through the caller's send: same programming
    assert result.iterations == reference.iterations
    np.testing.assert_array_equal(result.pulses, reference.pulses)
    np.testing.assert_array_equal(final, plain_final)


def test_a_send_that_fails_stops_the_loop_before_the_next_plan(tmp_path: Path) -> None:
    sent: list[PulsePlan] = []

    def failing_send(plan: PulsePlan) -> None:
        if sent:
            raise OSError("journal: disk full")
        array.apply(plan)
        sent.append(plan)

    with SimulatedCrossbar(3, 5, preset="epiram", seed=4, limits=ROOMY) as array:
        with pytest.raises(OSError, match="disk full"):
            _program(array, send=failing_send)
        delivered = array.pulse_counts
    assert len(sent) == 1
    np.testing.assert_array_equal(delivered, sent[0].counts_per_device())


def test_the_run_budget_given_by_the_caller_is_checked_before_anything_is_sent() -> None:
    budget = ROOMY.model_copy(update={"max_pulses_per_device_per_run": 100})
    calls: list[PulsePlan] = []
    with SimulatedCrossbar(3, 5, preset="epiram", seed=4, limits=ROOMY) as array:
        used = np.full((3, 5), 99, dtype=np.int64)  # pulses the caller's run already spent
        response, pulses, targets = _setup(array)
        with pytest.raises(LimitViolation, match="max_pulses_per_device_per_run=100"):
            program(
                array,
                targets,
                scheme=SCHEME,
                pulses=pulses,
                response=response,
                limits=budget,
                send=calls.append,
                run_counts=used,
            )
        assert int(array.pulse_counts.sum()) == 0
    assert calls == []


def test_a_caller_s_counted_reads_and_latest_read_replace_the_backend_reads() -> None:
    """What a training loop needs: its own read (counted) and no extra read to start from."""
    with SimulatedCrossbar(3, 5, preset="epiram", seed=4, limits=ROOMY) as array:
        reads: list[np.ndarray] = []
        sent_after: list[int] = []

        def counted_read() -> np.ndarray:
            reads.append(array.read())
            return reads[-1]

        def send(plan: PulsePlan) -> None:
            sent_after.append(len(reads))  # the plan was made from the latest counted read
            array.apply(plan)

        first = counted_read()
        result = _program(array, send=send, read_fn=counted_read, start=first)
    assert result.status == "converged"
    assert len(reads) == result.iterations + 1  # the caller's first read, then one per round
    assert sent_after == list(range(1, result.iterations + 1))
    np.testing.assert_array_equal(result.conductance, reads[-1])
