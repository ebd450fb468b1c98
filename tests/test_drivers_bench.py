"""The VISA station against emulator modes that behave like the real instruments.

Each test puts the emulator in a mode modelled on the B2900 or 707B manuals and public
drivers (docs/instruments.md §8) and drives the station through pyvisa-py on loopback TCP;
each fails when the driver fix it covers is taken out: a refused relay close, cards read
from the matrix, TSP prompts and stale errors, `*OPC?` answering before a train has ended,
pulses the buffer did not count, reads switching relays under voltage, upper-case and
two-letter identities, a list sweep left by a previous user, a late reply after a
timeout, a reply left by a previous session, a compliance hit, and both shutdown paths.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from drivers import open_backend
from drivers import scpi as S
from drivers.emu_array import make_array
from drivers.emu_scpi import (
    CARD_7174A,
    MatrixBehaviour,
    MatrixCore,
    SmuBehaviour,
    SmuCore,
    Station,
)
from drivers.emu_tcp import LinkBehaviour, ScpiEmulator
from drivers.errors import IdentityError, InstrumentError
from drivers.faults import FaultConfig
from drivers.source_b2900 import B2900Source
from drivers.transport import VisaTransport
from drivers.visa_backend import ComplianceHit, SmuMatrixBackend
from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape

WIDTH = 1e-4  # B2900 pulses (its minimum is 50 us)


class Bench:
    """An emulated station: the array, the SMU and matrix cores, the TCP server."""

    def __init__(
        self,
        rows: int = 2,
        cols: int = 2,
        *,
        smu: SmuBehaviour | None = None,
        matrix: MatrixBehaviour | None = None,
        source_link: LinkBehaviour | None = None,
        faults: FaultConfig | None = None,
    ) -> None:
        self.station = Station(make_array(rows, cols, preset="ideal", seed=1))
        self.smu = SmuCore(self.station, smu)
        self.matrix = MatrixCore(self.station, matrix)
        self.emu = ScpiEmulator(
            self.station, faults, source=self.smu, matrix=self.matrix, source_link=source_link
        ).start()
        self.shape = (rows, cols)

    def open(self, **options: Any) -> Any:
        return open_backend(
            "visa",
            self.emu.smu_resource,
            *self.shape,
            matrix_resource=self.emu.matrix_resource,
            pulse_source="b2900",  # named, so that no identity probe runs before the station
            **options,
        )

    def pulses(self) -> dict[tuple[int, int], int]:
        """Pulses that reached each device, from the emulator's own log."""
        out: Counter[tuple[int, int]] = Counter()
        for t in self.station.log:
            out[(t.row, t.col)] += t.count
        return dict(out)

    def events(self) -> list[str]:
        return [f"{e.who}: {e.what}" for e in self.station.events]

    def assert_safe(self) -> None:
        """Output off, every relay open, the trigger system idle, nothing switched hot."""
        import time

        assert not self.smu.output
        assert self.station.closed == set()
        assert self.smu.idle(time.monotonic())
        assert self.station.hot_switches == []


@pytest.fixture
def benches() -> Iterator[list[Bench]]:
    made: list[Bench] = []
    yield made
    for b in made:
        b.emu.stop()


@contextmanager
def bench(benches: list[Bench], *args: Any, **kwargs: Any) -> Iterator[Bench]:
    b = Bench(*args, **kwargs)
    benches.append(b)
    yield b


def plan(shape: tuple[int, int], amp: float, cells: dict, width: float = WIDTH) -> PulsePlan:
    counts = np.zeros(shape, dtype=np.int64)
    for (r, c), n in cells.items():
        counts[r, c] = n
    return PulsePlan.from_groups(
        shape, [PulseGroup(PulseShape(amplitude_v=amp, width_s=width), counts)]
    )


# -- 1. a refused relay close; cards; prompts and stale errors ---------------------------------
def test_a_refused_close_fires_nothing_on_the_device_connected_before(
    benches: list[Bench],
) -> None:
    """A 707B that refuses a close (here a channel left forbidden) changes nothing and still
    answers *OPC? with 1: without the error check the next train lands on (0, 0) again."""
    with bench(benches, matrix=MatrixBehaviour(forbidden={"1B04"})) as b:
        with b.open() as be, pytest.raises(InstrumentError, match=r"device \(0, 1\)"):
            be.apply(plan(b.shape, 1.5, {(0, 0): 3, (0, 1): 2}))
        assert b.pulses() == {(0, 0): 3}
        assert "matrix: refused close of forbidden 1B04" in b.events()
        b.assert_safe()


def test_the_cards_are_read_from_the_matrix(benches: list[Bench]) -> None:
    """An 8 x 16 array needs 24 columns, two 12-column cards; slot 2 is empty. The station
    refuses at start-up, before any output is on, naming the slot."""
    cards = [CARD_7174A] + ["Empty Slot"] * 5
    with bench(benches, 8, 16, matrix=MatrixBehaviour(cards=cards)) as b:
        with pytest.raises(InputError, match="slot 2 holds 'Empty Slot'"):
            b.open()
        assert "smu: output on" not in b.events()
        b.assert_safe()
    with bench(benches, 2, 2, matrix=MatrixBehaviour(cards=cards)) as b, b.open() as be:
        assert be.info().details["matrix_cards"][1] == "Empty Slot"  # 4 lines fit on slot 1


def test_prompts_and_errors_left_on_the_matrix_are_cleared(benches: list[Bench]) -> None:
    """A 707B left with TSP prompts on and an error in its queue (by Test Script Builder, a
    previous script): the station turns prompts off and clears the queue first, so neither
    a prompt line nor the old error is taken for the answer to a close."""
    left = MatrixBehaviour(prompts=True, stale_errors=[(-285, "TSP Syntax error")])
    with bench(benches, matrix=left) as b:
        with b.open() as be:
            be.apply(plan(b.shape, 1.5, {(1, 1): 2}))
            assert be.read().shape == b.shape
        assert b.pulses() == {(1, 1): 2}
        assert not b.matrix.prompts and b.matrix.errors == []
        b.assert_safe()


# -- 2. *OPC? answers before a train has ended; pulses not counted -----------------------------
def test_relays_wait_for_the_end_of_every_train(benches: list[Bench]) -> None:
    """`*OPC?` answers when the train starts, not when it ends (a real B2900): the station
    waits for the trigger system to be idle before the matrix moves, so no relay switches
    under a running train and every pulse reaches its device."""
    with bench(benches) as b:
        with b.open() as be:
            be.apply(plan(b.shape, 1.5, {(0, 0): 25, (1, 1): 25, (0, 1): 25}))
        assert b.pulses() == {(0, 0): 25, (1, 1): 25, (0, 1): 25}
        b.assert_safe()


def test_pulses_the_buffer_did_not_count_are_an_error(benches: list[Bench]) -> None:
    """An SMU whose pulses take longer than its settings say (firmware overhead) loses
    triggers: the count in the reading buffer shows it, and the station stops instead of
    going on with fewer pulses than planned."""
    with bench(benches, smu=SmuBehaviour(overhead_s=5e-4)) as b:
        with b.open() as be, pytest.raises(InstrumentError, match=r"delivered \d+ of 10 pulses"):
            be.apply(plan(b.shape, 1.5, {(0, 0): 10}))
        assert 0 < b.pulses()[(0, 0)] < 10
        b.assert_safe()


# -- 3. no relay switches under voltage during reads ---------------------------------------------
def test_reads_switch_relays_only_at_zero_volts(benches: list[Bench]) -> None:
    with bench(benches, 2, 3) as b:
        with b.open() as be:
            g = be.read()
        np.testing.assert_allclose(g, b.station.array.read(), rtol=1e-12)
        levels = [e for e in b.events() if e.startswith("smu: level") or " close " in e]
        for k, e in enumerate(levels):
            if e.startswith("matrix: close"):  # the SMU's last level before every close
                last = [x for x in levels[:k] if x.startswith("smu: level")][-1]
                assert last == "smu: level 0.0 V", (k, levels[: k + 1])
        b.assert_safe()


# -- 4. identities as real instruments give them ----------------------------------------------
@pytest.mark.parametrize(
    "idn",
    [
        "Keysight Technologies,B2910BL,MY61230001,1.0.2205.1002",
        "Keysight Technologies,B2901BL,MY61230002,1.0.2205.1002",
        "Agilent Technologies,B2912A,MY52350003,3.2.1526.5102",
    ],
)
def test_every_b29xx_model_and_an_upper_case_matrix(benches: list[Bench], idn: str) -> None:
    with bench(benches, smu=SmuBehaviour(idn=idn)) as b, b.open() as be:
        assert be.info().name.startswith(idn.split(",")[1] + " + MODEL 707B")


# -- 5. a known start state; a pulse period with room for every trigger ----------------------
def test_a_list_sweep_left_by_a_previous_user_does_not_set_the_amplitude(
    benches: list[Bench],
) -> None:
    """The SMU is found in list-sweep mode with a 5 V list (a previous session): the reset
    and fixed source mode at start-up make the pulses the planned 1.5 V."""
    left = SmuBehaviour(history=[":SOUR:VOLT:MODE LIST", ":SOUR:LIST:VOLT 5.0"])
    with bench(benches, smu=left) as b:
        with b.open() as be:
            be.apply(plan(b.shape, 1.5, {(0, 1): 4}))
        assert {t.amplitude_v for t in b.station.log} == {1.5}
        assert b.pulses() == {(0, 1): 4}


def test_the_pulse_period_leaves_room_for_every_trigger(benches: list[Bench]) -> None:
    """At the B2900's shortest width a pulse cycle is width + aperture + waits: the period
    the station programs covers it, so the buffer counts every pulse."""
    with bench(benches) as b:
        with b.open() as be:
            be.apply(plan(b.shape, 1.5, {(0, 0): 30, (1, 0): 30}, width=S.SMU_MIN_WIDTH_S))
        assert b.pulses() == {(0, 0): 30, (1, 0): 30}
        assert b.smu.period_s >= b.smu.cycle_s()


# -- 6. stale replies after a timeout or from a previous session -------------------------------
def test_a_late_reply_never_answers_the_next_question(benches: list[Bench]) -> None:
    """GPIB-like output queue (it outlives a reconnect) and one read whose reply comes just
    after the timeout, while the next devices are read: the station clears the link, so the
    late reply is dropped instead of being read as another device's current."""
    link = LinkBehaviour(persistent_output=True, late=[(":SOUR:FUNC:SHAP DC", 0.32)])
    slow = FaultConfig(latency_s=0.002)  # every reply: reading the array takes ~80 ms
    with bench(benches, 3, 3, source_link=link, faults=slow) as b:
        with b.open(timeout_s=0.3) as be:
            be.apply(plan(b.shape, 2.0, {(0, 0): 40}))  # (0, 0) now differs from the rest
            g = be.read()
        np.testing.assert_allclose(g, b.station.array.read(), rtol=1e-12)
        assert g[0, 0] != g[0, 1]
        assert b.emu.connections[0] >= 2  # the late reply did cost a reconnect


def test_a_reply_left_by_a_previous_session_is_cleared_at_open(benches: list[Bench]) -> None:
    link = LinkBehaviour(persistent_output=True, stale_lines=["+1.000000E-03"])
    with bench(benches, source_link=link) as b, b.open() as be:
        assert be.info().details["smu"] == b.smu.behaviour.idn


# -- 7. a read in compliance -------------------------------------------------------------------
def test_a_read_in_compliance_is_reported_not_converted(benches: list[Bench]) -> None:
    """At 0.125 V every device of the emulated array draws more than a 100 nA compliance:
    the SMU clamps, and the station says so instead of returning I_compliance / V."""
    hit = r"\(0, 0\).*current compliance 1e-07 A"
    with bench(benches) as b:
        with (
            b.open(limits=SafetyLimits(compliance_a=1e-7)) as be,
            pytest.raises(ComplianceHit, match=hit),
        ):
            be.read()
        b.assert_safe()


# -- 9. the station's own shutdown -------------------------------------------------------------
class _InterruptedMidTrain(B2900Source):
    """A host interrupted (Ctrl-C, a crash) while waiting for a long train."""

    def _idle_count(self, deadline: float, expect_done_at: float) -> int:
        raise KeyboardInterrupt


def test_a_failure_mid_train_aborts_it_before_the_relays_open(benches: list[Bench]) -> None:
    with bench(benches) as b:
        be = SmuMatrixBackend(
            VisaTransport(b.emu.smu_resource),
            VisaTransport(b.emu.matrix_resource),
            *b.shape,
            g_range_s=(1e-6, 1e-4),
            limits=SafetyLimits(max_pulses_per_device_per_update=1000),
            source=_InterruptedMidTrain,
        )
        with be, pytest.raises(KeyboardInterrupt):
            be.apply(plan(b.shape, 1.5, {(1, 0): 500}))  # 0.1 s of pulses
        assert b.pulses()[(1, 0)] < 500  # the train was cut short
        events = b.events()
        abort = events.index("smu: abort")
        off = events.index("smu: output off", abort)
        assert events.index("matrix: open all", off) > off
        b.assert_safe()


def test_a_constructor_failing_after_output_on_turns_it_off(benches: list[Bench]) -> None:
    """The SMU reports an error once its output is on: the constructor sets 0 V, turns the
    output off and opens every relay before it raises; and at start-up every relay was
    open before the output went on."""
    smu = SmuBehaviour(errors_on={":OUTP": (-221, "Settings conflict")})
    with bench(benches, smu=smu) as b:
        with pytest.raises(InstrumentError, match="-221 Settings conflict"):
            b.open()
        events = b.events()
        on = events.index("smu: output on")
        assert events.index("matrix: open all") < on < events.index("smu: output off")
        b.assert_safe()


def test_the_wrong_instrument_is_refused_before_anything_is_set(benches: list[Bench]) -> None:
    with bench(benches, smu=SmuBehaviour(idn="KEITHLEY INSTRUMENTS,MODEL 2450,1,1")) as b:
        with pytest.raises(IdentityError, match="MODEL 2450"):
            b.open()
        assert not any("reset" in e or "level" in e for e in b.events())
