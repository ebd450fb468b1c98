"""VISA plumbing against pyvisa-sim (drivers/sim/station.yaml): identity checks, the setup
message split into SCPI units, the error queue after setup, and a clean close."""

from __future__ import annotations

from pathlib import Path

import pytest

import drivers
from drivers.errors import IdentityError, InstrumentError
from drivers.transport import VisaTransport
from drivers.visa_backend import SmuMatrixBackend

YAML = Path(drivers.__file__).parent / "sim" / "station.yaml"
LIB = f"{YAML}@sim"
SMU = "TCPIP0::127.0.0.1::5025::SOCKET"
SMU_WITH_ERRORS = "TCPIP0::127.0.0.1::5125::SOCKET"
DMM = "TCPIP0::127.0.0.1::5225::SOCKET"
MATRIX = "TCPIP0::127.0.0.1::5026::SOCKET"


def station(smu: str, matrix: str = MATRIX) -> SmuMatrixBackend:
    return SmuMatrixBackend(
        VisaTransport(smu, visa_library=LIB),
        VisaTransport(matrix, visa_library=LIB),
        2,
        2,
        g_range_s=(1e-6, 1e-4),
        timeout_s=0.5,
    )


def test_yaml_ships_with_the_package() -> None:
    assert YAML.is_file()


def test_identity_setup_and_close_through_pyvisa_sim() -> None:
    be = station(SMU)
    info = be.info()
    assert info.kind == "visa"
    assert info.details["smu"].split(",")[1] == "B2901A"
    assert "707B" in info.details["matrix"]
    be.close()
    assert be.closed


def test_error_queue_entries_after_setup_raise() -> None:
    with pytest.raises(InstrumentError, match=r"-221 Settings conflict"):
        station(SMU_WITH_ERRORS)


def test_a_multimeter_is_not_an_smu() -> None:
    with pytest.raises(IdentityError, match=r"MODEL 2000.*not a B2900 SMU"):
        station(DMM)


def test_a_smu_is_not_a_switch_matrix() -> None:
    with pytest.raises(IdentityError, match="not a 707B matrix"):
        station(SMU, matrix=SMU)
