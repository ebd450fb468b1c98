"""The pulse board reads at the run's read voltage, not at the one its firmware powers up with.

A read voltage comes from the protocol (through the backend contract); the board is told
with `RDV` at open and again whenever the link is reopened (a board that reset has gone
back to its power-up voltage). The emulator counts every read request by the voltage it
ran at, so each test judges what reached the devices, not what the driver believes.
"""

from __future__ import annotations

import pytest

from drivers import board as B
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_serial import SerialEmulator
from drivers.serial_backend import PulseBoardBackend
from drivers.transport import SerialTransport
from protocols.errors import InputError

# pyserial's RFC 2217 client still names its reader thread the old way
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:serial.rfc2217")


def _core() -> BoardCore:
    return BoardCore(make_array(2, 3, preset="ideal", seed=1))


def test_every_read_runs_at_the_runs_read_voltage() -> None:
    core = _core()
    assert core.read_v == B.BOARD_POWER_UP_READ_V != 0.05
    with (
        SerialEmulator(core) as emu,
        PulseBoardBackend(SerialTransport(emu.path), 2, 3, read_v=0.05) as be,
    ):
        be.read()
        be.read(rows=[1])
    assert set(core.reads_at) == {0.05}
    assert sum(core.reads_at.values()) == 2


def test_a_board_that_reset_is_told_its_read_voltage_again() -> None:
    core = _core()
    with SerialEmulator(core, link="rfc2217") as emu:
        be = PulseBoardBackend(SerialTransport(emu.path), 2, 3, read_v=0.05, timeout_s=0.5)
        be.read()
        core.power_cycle()  # RAM lost: the board reads at its power-up voltage again
        emu.replug(core)  # the host's link drops; it reopens the same board
        be.read()
        be.close()
        assert be.stats.reconnects >= 1
    assert set(core.reads_at) == {0.05}


def test_a_read_voltage_the_board_cannot_source_is_refused_before_the_first_byte() -> None:
    core = _core()
    refused = r"read voltage 1.5 V: the pulse board reads at most"
    with SerialEmulator(core) as emu, pytest.raises(InputError, match=refused):
        PulseBoardBackend(SerialTransport(emu.path), 2, 3, read_v=1.5, timeout_s=0.5)
    assert sum(core.reads_at.values()) == 0 and core.read_v == B.BOARD_POWER_UP_READ_V


def test_the_board_refuses_a_read_voltage_outside_its_range() -> None:
    core = _core()
    for bad in ("0", "-0.1", "1.01", "nan"):
        reply = core.handle(B.encode("0001", f"{B.READ_V} {bad}"))
        assert B.decode(reply[0])[1].startswith(f"{B.R_ERR} "), bad
    assert core.read_v == B.BOARD_POWER_UP_READ_V
    ok = core.handle(B.encode("0002", B.read_voltage(0.3)))
    assert B.decode(ok[0])[1] == B.ok_read_voltage(0.3)
    asked = core.handle(B.encode("0003", B.READ_V_Q))
    assert B.decode(asked[0])[1] == f"{B.R_READ_V} 0.3"
