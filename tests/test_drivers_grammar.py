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
        ":SOUR:FUNC:SHAP PULS;:SOUR:VOLT:TRIG 1.5;:TRIG:ALL:TIM 0.0002;:SOUR:PULS:WIDT 0.0001;"
        ":TRIG:ALL:COUN 4;:INIT (@1);*OPC?"
    )
    assert S.smu_train(2, None, None, None) == (
        ":SOUR:FUNC:SHAP PULS;:TRIG:ALL:COUN 2;:INIT (@1);*OPC?"
    )
    # the read ends back at 0 V in pulse mode, in the same message as the measurement
    assert S.smu_read(0.125) == (
        ":SOUR:FUNC:SHAP DC;:TRIG:ALL:COUN 1;:SENS:CURR:APER 0.001;:SOUR:VOLT 0.125;"
        ":MEAS:CURR? (@1);:SENS:CURR:PROT:TRIP?;:SOUR:VOLT 0.0;:SENS:CURR:APER 2e-05;"
        ":SOUR:FUNC:SHAP PULS"
    )
    assert S.parse_read("1.25e-06;0") == (1.25e-06, False)
    assert S.parse_read("0.001;1") == (0.001, True)
    assert S.parse_idle_count("0;12") == (False, 12)
    # abort, 0 V, output off: the matrix opens after this
    assert S.smu_shutdown() == ":ABOR:ALL (@1);:SOUR:VOLT 0.0;:SOUR:VOLT:TRIG 0.0;:OUTP OFF;*OPC?"
    assert S.smu_reset() == "*RST;*CLS;*OPC?"
    setup = S.smu_configure(1e-3).split(";")
    assert ":SOUR:VOLT:MODE FIX" in setup and ":SENS:CURR:RANG 0.001" in setup
    assert ":OUTP ON" not in setup  # the output goes on only after the matrix is open
    assert S.parse_error('-222,"Data out of range"') == (-222, "Data out of range")
    assert S.parse_error('+0,"No error"') == (0, "No error")
    with pytest.raises(ValueError):
        S.parse_error("garbage")
    with pytest.raises(ValueError):
        S.parse_float("1.0e")
    assert S.parse_matrix_error("1115\tParameter error invalid channel list\t0\t1")[0] == 1115
    assert S.parse_matrix_error("1.11500e+03\tParameter error\t0\t1")[0] == 1115
    assert S.parse_tsp_int("0.00000e+00") == 0 and S.parse_tsp_int("3") == 3
    assert S.tsp_number(2) == "2.00000e+00"


@pytest.mark.parametrize(
    "idn",
    [
        "Keysight Technologies,B2901A,MY5400123,3.4.2011.5100",
        "Keysight Technologies,B2910BL,MY5400123,1.0",
        "Keysight Technologies,B2901BL,MY5400123,1.0",
        "Agilent Technologies,B2962A,MY5400123,1.0",
        "KEYSIGHT TECHNOLOGIES,B2912C,MY5400123,1.0",
    ],
)
def test_every_b29xx_model_is_an_smu(idn: str) -> None:
    assert S.SMU_MODEL_RE.match(idn)


@pytest.mark.parametrize(
    ("idn", "ok"),
    [
        ("KEITHLEY INSTRUMENTS INC.,MODEL 707B,00000170,01.10h", True),
        ("Keithley Instruments Inc.,Model 707B,04123456,1.2.0", True),
        ("KEITHLEY INSTRUMENTS INC.,MODEL 708B,00000171,01.10h", True),
        ("KEITHLEY INSTRUMENTS INC.,MODEL 2000,SIM0003,A20", False),
    ],
)
def test_matrix_identity_is_case_insensitive(idn: str, ok: bool) -> None:
    assert bool(S.MATRIX_MODEL_RE.match(idn)) is ok


def test_card_sizes() -> None:
    assert S.card_size("7174A,8x12 Low Current Matrix,01.00a,99999999") == (8, 12)
    assert S.card_size("7173,4x12 Hi Freq Matrix AAAA,02.01a,99999999") == (4, 12)
    assert S.card_size("Empty Slot") is None


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
    # bit line 2 is matrix line 10 + 2 = 12: slot 2, column 01; the error count comes back
    # in the same exchange
    assert S.matrix_connect(m, 1, 2, "A") == [
        'channel.exclusiveclose("1A02,2B01")',
        "print(errorqueue.count)",
        "*OPC?",
    ]
    assert S.matrix_connect(m, 1, 2, "C")[0] == 'channel.exclusiveclose("1C02,2B01")'


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
