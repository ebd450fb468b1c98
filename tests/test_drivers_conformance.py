"""Every instrument backend passes the backend conformance suite, end to end through the
real pyvisa-py (loopback TCP) and pyserial (pseudo-terminal) stacks, against the emulators;
the ArC TWO against its pyarc2 double, and the dry-run backends too.

Each is judged by its device side (`conformance.Witness`): the emulated array's
conductances and its emulator's own record (applied batches, pulse log, frames received),
never by the backend's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conformance import RigConformance, Witness, array_witness

import drivers.emu_array
import drivers.emu_scpi
from drivers import open_backend
from drivers.arc2_backend import Arc2Backend
from drivers.emu_arc1 import Arc1Core, Arc1Emulator
from drivers.emu_arc2 import Arc2Board, Pyarc2Double
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_kxci import KxciCore
from drivers.emu_scpi import Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from protocols.backend import CrossbarBackend
from protocols.limits import SafetyLimits, check_plan
from protocols.plan import PulsePlan

Rig = Iterator[tuple[CrossbarBackend, Witness]]
IDEAL_RANGE = (1e-6, 1e-4)  # the ideal preset's window


def board_witness(core: BoardCore) -> Witness:
    """The board's array, its log of applied batches and every frame it received."""
    return array_witness(core.array, log=lambda: (core.log.entries, dict(core.commands)))


def station_witness(station: Station) -> Witness:
    """The station's array (pulses it holds back handed over first), its pulse log and
    the record of every relay and source change."""
    return array_witness(
        station.array, flush=station.flush, log=lambda: (list(station.log), len(station.events))
    )


class TestSerialBoard(RigConformance):
    @pytest.fixture(params=["ideal", "taox_hfox"])
    def rig(self, request: pytest.FixtureRequest) -> Rig:
        core = BoardCore(make_array(3, 5, preset=request.param, seed=2))
        with SerialEmulator(core) as emu, open_backend("serial", emu.path, 3, 5) as be:
            yield be, board_witness(core)


class TestVisaStation(RigConformance):
    @pytest.fixture
    def rig(self) -> Rig:
        station = Station(make_array(3, 4, preset="ideal", seed=2), min_width_s=1e-9)
        with (
            ScpiEmulator(station) as emu,
            open_backend(
                "visa",
                emu.smu_resource,
                3,
                4,
                matrix_resource=emu.matrix_resource,
                min_width_s=1e-9,
                timeout_s=2.0,
            ) as be,
        ):
            yield be, station_witness(station)


class TestVisa4200Station(RigConformance):
    """The station with the 4200A-SCS as its pulse source (PMU pulses, SMU1 reads)."""

    @pytest.fixture
    def rig(self) -> Rig:
        station = Station(make_array(3, 4, preset="ideal", seed=2))
        with (
            ScpiEmulator(station, source=KxciCore(station)) as emu,
            open_backend(
                "visa",
                emu.smu_resource,
                3,
                4,
                matrix_resource=emu.matrix_resource,
                pulse_source="4200a-pmu",
                timeout_s=2.0,
            ) as be,
        ):
            yield be, station_witness(station)


class TestArcOne(RigConformance):
    """The ArC ONE driver over a pty to its emulator (pulses reach the array at the next
    read; the witness hands them over first)."""

    exact_resume = False

    @pytest.fixture
    def rig(self) -> Rig:
        core = Arc1Core(make_array(3, 4, preset="ideal", seed=2))
        fast: dict[str, Any] = {"reset_wait_s": 0.0, "write_delay_s": 0.0, "timeout_s": 0.5}
        with (
            Arc1Emulator(core) as emu,
            open_backend("arc1", emu.url, 3, 4, version_timeout_s=0.2, **fast) as be,
        ):
            witness = array_witness(
                core.array,
                flush=core.flush,
                pulses=lambda: core.log.counts(3, 4),
                log=lambda: (core.log.entries, list(core.ignored)),
            )
            yield be, witness


class TestArcTwo(RigConformance):
    """The ArC TWO driver on the pyarc2 double (every call it makes is recorded)."""

    @pytest.fixture
    def rig(self) -> Rig:
        board = Arc2Board(make_array(3, 4, preset="ideal", seed=2))
        api = Pyarc2Double(board)
        inst = api.Instrument(0, "fw.bin")
        with Arc2Backend(inst, api, 3, 4, limits=SafetyLimits(), g_range_s=IDEAL_RANGE) as be:
            witness = array_witness(
                board.array,
                flush=board.flush,
                pulses=lambda: board.pulse_counts()[:3, :4],
                log=lambda: (list(board.pulses), len(board.calls)),
            )
            yield be, witness


@pytest.fixture
def dry_arrays(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The in-process arrays and stations a dry run's emulated firmware answers from."""
    made: list[Any] = []
    real_array, real_station = drivers.emu_array.make_array, drivers.emu_scpi.Station

    def array(*args: Any, **kwargs: Any) -> CrossbarBackend:
        made.append(real_array(*args, **kwargs))
        return made[-1]

    def station(*args: Any, **kwargs: Any) -> Station:
        made.append(real_station(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(drivers.emu_array, "make_array", array)
    monkeypatch.setattr(drivers.emu_scpi, "Station", station)
    return made


class TestDryRunSerial(RigConformance):
    @pytest.fixture
    def rig(self, tmp_path: Path, dry_arrays: list[Any]) -> Rig:
        with open_backend("serial", "/dev/ttyNOWHERE", 2, 3, dry_run=tmp_path / "s.txt") as be:
            (array,) = dry_arrays
            lines = be.transport  # type: ignore[attr-defined]
            yield be, array_witness(array, log=lambda: lines.lines_written)


class TestDryRunVisa(RigConformance):
    @pytest.fixture
    def rig(self, tmp_path: Path, dry_arrays: list[Any]) -> Rig:
        with open_backend("visa", None, 2, 3, dry_run=tmp_path / "v.txt", min_width_s=1e-9) as be:
            _, station = dry_arrays
            yield be, station_witness(station)


# -- the suite's teeth on a real driver ---------------------------------------------------
def test_a_board_driver_that_checks_its_limits_after_sending_fails_the_suite() -> None:
    """The pulse-board driver, changed to send first and check afterwards: the refusal
    still comes and its own count is unchanged, but the emulated board has applied the
    batch, and the suite says so."""
    from drivers.serial_backend import PulseBoardBackend

    class SendsFirst(PulseBoardBackend):
        def apply(self, plan: PulsePlan) -> None:
            self._check_open()
            if not plan.is_empty:
                self._apply(plan)
            check_plan(plan, self.limits, run_counts=self._pulse_counts)
            for group in plan.groups:
                self._pulse_counts += group.counts

    from drivers.transport import SerialTransport

    core = BoardCore(make_array(2, 3, preset="ideal", seed=2))
    with SerialEmulator(core) as emu, SendsFirst(SerialTransport(emu.path), 2, 3) as be:
        before = be.pulse_counts
        with pytest.raises(AssertionError, match="a device moved"):
            TestSerialBoard().test_unsafe_plan_reaches_no_device(be, board_witness(core))
        np.testing.assert_array_equal(be.pulse_counts, before)  # the old criterion held
        assert core.log.entries  # the board applied what was refused
