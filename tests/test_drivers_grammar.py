"""The wire grammars on their own: frames, checksums, command strings, channel maps, and a
framing round trip through pyserial's loop:// port."""

from __future__ import annotations

import binascii

import pytest

from drivers import board as B
from drivers import scpi as S
from drivers.errors import LinkTimeout
from drivers.transport import SerialTransport


def test_frame_carries_tag_body_and_crc16() -> None:
    line = B.encode("00A1", "EXEC 7")
    head = b"00A1 EXEC 7"
    assert line == head + b"*" + f"{binascii.crc_hqx(head, 0xFFFF):04X}".encode()
    assert B.decode(line) == ("00A1", "EXEC 7")


@pytest.mark.parametrize(
    "bad",
    [
        b"00A1 EXEC 7*0000",  # wrong checksum
        b"00A1 EXEC 7",  # no checksum
        b"zz EXEC 7*1234",  # bad tag
        b"00A1 EX\xffEC*1234",  # non-ASCII
        b"",
    ],
)
def test_bad_frames_are_refused(bad: bytes) -> None:
    with pytest.raises(B.FrameError):
        B.decode(bad)


def test_every_single_byte_corruption_is_caught() -> None:
    line = B.encode("0042", "ROW 3 0 1 1,0,2,64")
    for i in range(len(line)):
        for delta in (1, 0x20, 0x80):
            corrupted = bytearray(line)
            corrupted[i] = (corrupted[i] + delta) % 256
            with pytest.raises(B.FrameError):
                B.decode(bytes(corrupted))


def test_board_request_builders() -> None:
    assert B.begin(3, 2, "v2") == "BEGIN 3 2 v2"
    assert B.shape(3, 1, -1.8, 5e-8, True) == "SHAPE 3 1 -1.8 5e-08 1"
    assert B.row(3, 0, 2, [0, 4, 1]) == "ROW 3 0 2 0,4,1"
    assert B.pulse(3, 0, 2, 1, 9) == "PULSE 3 0 2 1 9"
    assert B.execute(3) == "EXEC 3"
    assert B.read_row(5) == "RROW? 5"
    assert B.error(B.E_STALE, "2 <= last 4") == (
        "ERR 5 batch number not above the last applied batch: 2 <= last 4"
    )


def test_board_reply_parsers() -> None:
    ident = B.parse_identity("ID MRNN-PB1 SN9 2.1 16 32")
    assert (ident.model, ident.rows, ident.cols) == ("MRNN-PB1", 16, 32)
    assert B.parse_row_values("RROW 1 1e-06,2.5e-05", 1, 2) == [1e-6, 2.5e-5]
    with pytest.raises(B.FrameError, match="row 2"):
        B.parse_row_values("RROW 1 1e-06,2.5e-05", 2, 2)
    with pytest.raises(B.FrameError, match="3 values, expected 2"):
        B.parse_row_values("RROW 1 1,2,3", 1, 2)
    assert B.parse_ints("LAST 12 40", "LAST", 2) == [12, 40]
    assert B.parse_error("ERR 4 no such staged batch") == (4, "no such staged batch")
    assert B.parse_error("OK BEGIN 1") is None


def test_numbers_survive_the_wire_exactly() -> None:
    for x in (0.1, 1 / 3, 1.23456789012345e-7, -2.0, 5e-324):
        assert float(S.num(x)) == x
        assert float(B.num(x)) == x
    with pytest.raises(ValueError, match="non-finite"):
        S.num(float("nan"))


def test_scpi_messages() -> None:
    assert S.smu_train(4, 1.5, 1e-4, 2e-4) == (
        ":SOUR:FUNC:SHAP PULS;:SOUR:VOLT:TRIG 1.5;:TRIG:TIM 0.0002;:SOUR:PULS:WIDT 0.0001;"
        ":TRIG:COUN 4;:INIT (@1);*OPC?"
    )
    assert S.smu_train(2, None, None, None) == ":SOUR:FUNC:SHAP PULS;:TRIG:COUN 2;:INIT (@1);*OPC?"
    assert S.smu_read(0.125) == ":SOUR:FUNC:SHAP DC;:SOUR:VOLT 0.125;:MEAS:CURR? (@1)"
    assert S.parse_error('-222,"Data out of range"') == (-222, "Data out of range")
    assert S.parse_error('+0,"No error"') == (0, "No error")
    with pytest.raises(ValueError):
        S.parse_error("garbage")
    with pytest.raises(ValueError):
        S.parse_float("1.0e")
    assert S.parse_matrix_error("1115\tParameter error invalid channel list\t0\t1")[0] == 1115


def test_matrix_channel_map() -> None:
    m = S.MatrixMap(rows=10, cols=20)
    assert m.device(0, 0) == "1A01,1B11"
    assert m.device(9, 19) == "1A10,3B06"  # line 29 -> slot 3, column 6
    assert m.line_of("3B06") == ("B", 29)
    assert m.fits()
    assert not S.MatrixMap(rows=40, cols=40).fits()
    with pytest.raises(ValueError):
        m.line_of("7A01")
    with pytest.raises(ValueError):
        m.line_of("1A13")
    # bit line 2 is matrix line 10 + 2 = 12: slot 2, column 01
    assert S.matrix_connect(m, 1, 2) == ['channel.exclusiveclose("1A02,2B01")', "*OPC?"]


def test_loop_url_carries_frames_through_pyserial() -> None:
    port = SerialTransport("loop://")
    try:
        line = B.encode("0007", B.row(1, 0, 0, [1, 2, 3]))
        port.write_line(line)
        assert B.decode(port.read_line(1.0)) == ("0007", "ROW 1 0 0 1,2,3")
        with pytest.raises(LinkTimeout):
            port.read_line(0.1)
    finally:
        port.close()


def test_smu_trace_buffer_is_cleared_only_while_writing_is_stopped() -> None:
    """The B2900 accepts :TRAC:CLE in control mode NEV only; the epoch message stops the
    buffer first, and the emulator refuses a clear while it is writing (NEXT)."""
    from drivers.emu_array import make_array
    from drivers.emu_scpi import SmuCore, Station

    smu = SmuCore(Station(make_array(2, 2)))
    assert smu.handle(S.smu_epoch().encode()) == ["1"]
    assert smu.handle(b":TRAC:CLE;*OPC?") == []  # refused: the buffer is writing (NEXT)
    assert smu.handle(b":SYST:ERR?") == ['-221,"Settings conflict"']
    assert smu.handle(S.smu_epoch().encode()) == ["1"]
    assert smu.handle(b":SYST:ERR?") == ['+0,"No error"']
