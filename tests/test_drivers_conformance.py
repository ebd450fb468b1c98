"""Both instrument backends pass the backend conformance suite, end to end through the real
pyvisa-py (loopback TCP) and pyserial (pseudo-terminal) stacks, against the emulators; the
dry-run backends pass it too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance import BackendConformance

from drivers import open_backend
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_kxci import KxciCore
from drivers.emu_scpi import Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from protocols.backend import CrossbarBackend


class TestSerialBoard(BackendConformance):
    @pytest.fixture(params=["ideal", "taox_hfox"])
    def backend(self, request: pytest.FixtureRequest) -> Iterator[CrossbarBackend]:
        core = BoardCore(make_array(3, 5, preset=request.param, seed=2))
        with SerialEmulator(core) as emu, open_backend("serial", emu.path, 3, 5) as be:
            yield be


class TestVisaStation(BackendConformance):
    @pytest.fixture
    def backend(self) -> Iterator[CrossbarBackend]:
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
            yield be


class TestVisa4200Station(BackendConformance):
    """The station with the 4200A-SCS as its pulse source (PMU pulses, SMU1 reads)."""

    @pytest.fixture
    def backend(self) -> Iterator[CrossbarBackend]:
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
            yield be


class TestDryRunSerial(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[CrossbarBackend]:
        with open_backend("serial", "/dev/ttyNOWHERE", 2, 3, dry_run=tmp_path / "s.txt") as be:
            yield be


class TestDryRunVisa(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[CrossbarBackend]:
        with open_backend("visa", None, 2, 3, dry_run=tmp_path / "v.txt", min_width_s=1e-9) as be:
            yield be
