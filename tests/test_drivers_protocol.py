"""Exact command/response sequences of every driver method, over the real transports.

The expected lines are written out here from the instrument grammars (docs/instruments.md,
docs/serial-protocol.md), not taken from the driver: a scripted peer fails the test on any
wrong, missing or extra line.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator

import numpy as np
import pytest
from driver_peers import DROP, PtyPeer, Script, Step, TcpPeer

from drivers.errors import IdentityError, InstrumentError, LinkLost
from drivers.serial_backend import PulseBoardBackend
from drivers.transport import SerialTransport, VisaTransport
from drivers.visa_backend import SmuMatrixBackend
from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape

SMU_IDN = b"Keysight Technologies,B2901A,MY5400123,3.4.2011.5100"
MATRIX_IDN = b"Keithley Instruments Inc.,Model 707B,04123456,1.2.0"
OK = b"1"
NO_ERR = b'+0,"No error"'
SETUP = (
    b"*CLS;:SOUR:FUNC:MODE VOLT;:SOUR:FUNC:SHAP PULS;:SOUR:VOLT 0.0;:SOUR:PULS:DEL 0.0;"
    b":SENS:CURR:PROT 0.001;:TRIG:SOUR TIM;:TRIG:TIM 0.0001;:OUTP ON;*OPC?"
)


def smu(expect: bytes, *replies: bytes) -> Step:
    return Step("smu", expect, list(replies))


def mx(expect: bytes, *replies: bytes) -> Step:
    return Step("matrix", expect, list(replies))


def release() -> list[Step]:
    return [mx(b'channel.open("allslots")'), mx(b"*OPC?", OK)]


def connect(channels: bytes) -> list[Step]:
    return [mx(b'channel.exclusiveclose("' + channels + b'")'), mx(b"*OPC?", OK)]


def visa_open() -> list[Step]:
    return [
        smu(b"*IDN?", SMU_IDN),
        mx(b"*IDN?", MATRIX_IDN),
        smu(SETUP, OK),
        smu(b":SYST:ERR?", NO_ERR),
        *release(),
    ]


def visa_close() -> list[Step]:
    return [smu(b":SOUR:VOLT 0.0;:OUTP OFF;*OPC?", OK), *release()]


class Station:
    """Two scripted peers and the backend under test."""

    def __init__(self, steps: list[Step]) -> None:
        self.script = Script(steps)
        self.smu = TcpPeer("smu", self.script)
        self.matrix = TcpPeer("matrix", self.script)

    def backend(self, rows: int = 2, cols: int = 2, **kw: object) -> SmuMatrixBackend:
        return SmuMatrixBackend(
            VisaTransport(self.smu.resource),
            VisaTransport(self.matrix.resource),
            rows,
            cols,
            g_range_s=(1e-6, 1e-4),
            **kw,  # type: ignore[arg-type]
        )

    def stop(self) -> None:
        self.smu.stop()
        self.matrix.stop()


@pytest.fixture
def station() -> Iterator[list[Station]]:
    made: list[Station] = []
    yield made
    for s in made:
        s.stop()


def make(station: list[Station], steps: list[Step]) -> Station:
    s = Station(steps)
    station.append(s)
    return s


def plan(shape: tuple[int, int], amp: float, width: float, cells: dict) -> PulsePlan:
    counts = np.zeros(shape, dtype=np.int64)
    for (r, c), n in cells.items():
        counts[r, c] = n
    return PulsePlan.from_groups(
        shape, [PulseGroup(PulseShape(amplitude_v=amp, width_s=width), counts)]
    )


TRAIN_FIRST = b":SOUR:FUNC:SHAP PULS;:SOUR:VOLT:TRIG 1.5;:TRIG:TIM 0.0002;:SOUR:PULS:WIDT 0.0001;"


def test_visa_open_apply_read_close(station: list[Station]) -> None:
    steps = [
        *visa_open(),
        # apply: 3 pulses on (0, 1), then 2 on (1, 0); shape sent once
        smu(b":TRAC:FEED:CONT NEV;:TRAC:CLE;:TRAC:FEED:CONT NEXT;*OPC?", OK),
        *connect(b"1A01,1B04"),
        smu(TRAIN_FIRST + b":TRIG:COUN 3;:INIT (@1);*OPC?", OK),
        *connect(b"1A02,1B03"),
        smu(b":SOUR:FUNC:SHAP PULS;:TRIG:COUN 2;:INIT (@1);*OPC?", OK),
        *release(),
        smu(b":SYST:ERR?", NO_ERR),
        # read one device: DC spot measurement at the read voltage it was given (0.125 V)
        *connect(b"1A02,1B03"),
        smu(b":SOUR:FUNC:SHAP DC;:SOUR:VOLT 0.125;:MEAS:CURR? (@1)", b"+1.25E-06"),
        smu(b":SOUR:VOLT 0.0;:SOUR:FUNC:SHAP PULS;*OPC?", OK),
        *release(),
        *visa_close(),
    ]
    st = make(station, steps)
    be = st.backend(read_v=0.125)
    be.apply(plan((2, 2), 1.5, 1e-4, {(0, 1): 3, (1, 0): 2}))
    g = be.read(rows=[1], cols=[0])
    assert g[0, 0] == pytest.approx(1e-5, rel=1e-12)
    be.close()
    st.script.verify()
    np.testing.assert_array_equal(be.pulse_counts, [[0, 3], [2, 0]])


def test_visa_lost_reply_is_resolved_by_the_pulse_count(station: list[Station]) -> None:
    steps = [
        *visa_open(),
        smu(b":TRAC:FEED:CONT NEV;:TRAC:CLE;:TRAC:FEED:CONT NEXT;*OPC?", OK),
        *connect(b"1A01,1B03"),
        smu(TRAIN_FIRST + b":TRIG:COUN 3;:INIT (@1);*OPC?", DROP),
        # after the timeout: a new connection, the error queue, the count (read twice)
        smu(b":SYST:ERR?", NO_ERR),
        smu(b":TRAC:POIN:ACT?", b"3"),
        smu(b":TRAC:POIN:ACT?", b"3"),
        *connect(b"1A02,1B04"),
        smu(TRAIN_FIRST + b":TRIG:COUN 4;:INIT (@1);*OPC?", DROP),
        smu(b":SYST:ERR?", NO_ERR),
        smu(b":TRAC:POIN:ACT?", b"3"),
        smu(b":TRAC:POIN:ACT?", b"3"),
        # none of the 4 was delivered: resend them, shape included
        smu(TRAIN_FIRST + b":TRIG:COUN 4;:INIT (@1);*OPC?", OK),
        *release(),
        smu(b":SYST:ERR?", NO_ERR),
        *visa_close(),
    ]
    st = make(station, steps)
    be = st.backend(timeout_s=0.2)
    be.apply(plan((2, 2), 1.5, 1e-4, {(0, 0): 3, (1, 1): 4}))
    be.close()
    st.script.verify()
    assert st.smu.connections == 3


def test_visa_error_queue_after_a_batch_raises(station: list[Station]) -> None:
    steps = [
        *visa_open(),
        smu(b":TRAC:FEED:CONT NEV;:TRAC:CLE;:TRAC:FEED:CONT NEXT;*OPC?", OK),
        *connect(b"1A01,1B03"),
        smu(TRAIN_FIRST + b":TRIG:COUN 1;:INIT (@1);*OPC?", OK),
        *release(),
        smu(b":SYST:ERR?", b'-222,"Data out of range"'),
        smu(b":SYST:ERR?", NO_ERR),
        *visa_close(),
    ]
    st = make(station, steps)
    be = st.backend()
    with pytest.raises(InstrumentError, match="-222 Data out of range"):
        be.apply(plan((2, 2), 1.5, 1e-4, {(0, 0): 1}))
    be.close()
    st.script.verify()


def test_visa_unsafe_plan_sends_nothing(station: list[Station]) -> None:
    st = make(station, [*visa_open(), *visa_close()])
    be = st.backend(limits=SafetyLimits(max_set_v=2.0))
    with pytest.raises(LimitViolation, match=r"row=1, col=0"):
        be.apply(plan((2, 2), 2.5, 1e-4, {(1, 0): 1}))
    be.close()
    st.script.verify()


def test_visa_too_short_pulse_is_refused_before_sending(station: list[Station]) -> None:
    st = make(station, [*visa_open(), *visa_close()])
    be = st.backend()
    with pytest.raises(ValueError, match="below the SMU's minimum pulse width"):
        be.apply(plan((2, 2), 1.5, 1e-7, {(0, 0): 1}))
    be.close()
    st.script.verify()


def test_visa_too_long_pulse_is_refused_before_sending(station: list[Station]) -> None:
    st = make(station, [*visa_open(), *visa_close()])
    be = st.backend(limits=SafetyLimits(max_width_s=1e6))
    with pytest.raises(ValueError, match=r"above the SMU's maximum pulse width 99999\.9 s"):
        be.apply(plan((2, 2), 1.5, 2e5, {(0, 0): 1}))
    be.close()
    st.script.verify()


def test_visa_compliance_outside_the_smu_range_sends_nothing(station: list[Station]) -> None:
    st = make(station, [])
    with pytest.raises(ValueError, match=r"compliance_a=2 A is outside .* \[1e-09, 1.5\] A"):
        st.backend(limits=SafetyLimits(compliance_a=2.0))
    st.script.verify()


def test_visa_wrong_instrument_is_refused(station: list[Station]) -> None:
    st = make(station, [smu(b"*IDN?", b"Rigol Technologies,DP832,DP8A1234,00.01.14")])
    with pytest.raises(IdentityError, match="not a B2900-series SMU"):
        st.backend()
    st.script.verify()


# -- pulse board ---------------------------------------------------------------------------
def frame(tag: int, body: str) -> bytes:
    head = f"{tag:04X} {body}".encode()
    return head + f"*{binascii.crc_hqx(head, 0xFFFF):04X}".encode()


class Board:
    def __init__(self, bodies: list[tuple[str, list[str]]]) -> None:
        steps = []
        for tag, (sent, replies) in enumerate(bodies, start=1):
            rep = [DROP if r == "<drop>" else frame(tag, r) for r in replies]
            steps.append(Step("board", frame(tag, sent), rep))
        self.script = Script(steps)
        self.peer = PtyPeer("board", self.script)

    def backend(self, rows: int = 2, cols: int = 3, **kw: object) -> PulseBoardBackend:
        return PulseBoardBackend(SerialTransport(self.peer.path), rows, cols, **kw)  # type: ignore[arg-type]


@pytest.fixture
def boards() -> Iterator[list[Board]]:
    made: list[Board] = []
    yield made
    for b in made:
        b.peer.stop()


BOARD_OPEN = [
    ("ID?", ["ID MRNN-PB1 SN7 1.0 2 3"]),
    ("RANGE?", ["RANGE 1e-06 0.0001"]),
    ("LAST?", ["LAST 4 10"]),
]


def two_groups() -> PulsePlan:
    set_counts = np.array([[1, 0, 2], [0, 0, 5]])
    reset_counts = np.array([[0, 3, 0], [0, 0, 0]])
    return PulsePlan.from_groups(
        (2, 3),
        [
            PulseGroup(PulseShape(amplitude_v=2.0, width_s=1e-7), set_counts),
            PulseGroup(PulseShape(amplitude_v=-2.0, width_s=1e-7), reset_counts),
        ],
    )


def test_board_open_apply_reads(boards: list[Board]) -> None:
    b = Board(
        [
            *BOARD_OPEN,
            ("BEGIN 5 2 none", ["OK BEGIN 5"]),
            ("SHAPE 5 0 2.0 1e-07 0", ["OK SHAPE 5 0"]),
            ("ROW 5 0 0 1,0,2", ["OK ROW 5 0 0 3"]),
            ("PULSE 5 0 1 2 5", ["OK PULSE 5 0 1 2 5"]),
            ("SHAPE 5 1 -2.0 1e-07 0", ["OK SHAPE 5 1"]),
            ("PULSE 5 1 0 1 3", ["OK PULSE 5 1 0 1 3"]),
            ("EXEC 5", ["DONE 5 11"]),
            ("RARR?", ["RROW 0 1e-05,2e-05,3e-05", "RROW 1 4e-05,5e-05,6e-05", "END 2"]),
            ("RROW? 1", ["RROW 1 4e-05,5e-05,6.5e-05"]),
        ]
    )
    boards.append(b)
    be = b.backend()
    assert be.info().g_max_s == 1e-4
    be.apply(two_groups())
    g = be.read()
    np.testing.assert_array_equal(g, [[1e-5, 2e-5, 3e-5], [4e-5, 5e-5, 6e-5]])
    np.testing.assert_array_equal(be.read(rows=[1], cols=[2, 0]), [[6.5e-5, 4e-5]])
    be.close()
    b.script.verify()


def test_board_lost_exec_reply_is_resolved_by_last(boards: list[Board]) -> None:
    one = PulsePlan.from_groups(
        (2, 3),
        [PulseGroup(PulseShape(amplitude_v=2.0, width_s=1e-7), np.array([[0, 0, 0], [1, 1, 0]]))],
    )
    b = Board(
        [
            *BOARD_OPEN,
            ("BEGIN 5 1 none", ["OK BEGIN 5"]),
            ("SHAPE 5 0 2.0 1e-07 0", ["OK SHAPE 5 0"]),
            ("ROW 5 0 1 1,1,0", ["OK ROW 5 0 1 2"]),
            ("EXEC 5", ["<drop>"]),  # applied, but the reply is lost
            ("LAST?", ["LAST 5 2"]),  # so it is not applied again
            ("BEGIN 6 1 none", ["OK BEGIN 6"]),
            ("SHAPE 6 0 2.0 1e-07 0", ["OK SHAPE 6 0"]),
            ("ROW 6 0 1 1,1,0", ["OK ROW 6 0 1 2"]),
            ("EXEC 6", ["<drop>"]),  # this time the board lost the link before EXEC
            ("LAST?", ["LAST 5 2"]),
            ("BEGIN 6 1 none", ["OK BEGIN 6"]),
            ("SHAPE 6 0 2.0 1e-07 0", ["OK SHAPE 6 0"]),
            ("ROW 6 0 1 1,1,0", ["OK ROW 6 0 1 2"]),
            ("EXEC 6", ["DONE 6 2"]),
        ]
    )
    boards.append(b)
    be = b.backend(timeout_s=0.2)
    be.apply(one)
    be.apply(one)
    be.close()
    b.script.verify()
    assert be.stats.resolved_by_last == 1


def test_board_stale_reply_is_skipped_and_refusal_raises(boards: list[Board]) -> None:
    b = Board(
        [
            *BOARD_OPEN,
            ("BEGIN 5 2 none", ["OK BEGIN 4", "OK BEGIN 5"]),
            ("SHAPE 5 0 2.0 1e-07 0", ["ERR 3 value out of range: width"]),
        ]
    )
    # the first reply carries the right tag but wrong content; make it a stale tag instead
    b.script.steps[3].replies[0] = frame(0x0003, "OK BEGIN 4")
    boards.append(b)
    be = b.backend()
    with pytest.raises(InstrumentError, match="error 3"):
        be.apply(two_groups())
    be.close()
    b.script.verify()
    assert be.stats.stale_replies == 1


def test_board_flooding_stale_replies_cannot_hold_the_driver(boards: list[Board]) -> None:
    """A board that keeps sending lines with another tag (one every 50 ms for 3 s) does not
    keep the driver reading: the request times out after timeout_s, not after the flood."""
    stale = "RROW 0 1e-05,2e-05,3e-05"
    b = Board([*BOARD_OPEN, ("RROW? 1", [stale] * 60)])
    b.script.steps[-1].replies = [frame(0x0999, stale)] * 60
    boards.append(b)
    be = b.backend(timeout_s=0.3, retries=1)
    b.peer.gap_s = 0.05
    with pytest.raises(LinkLost, match="no valid reply to RROW"):
        be.read(rows=[1])
    be.close()
    # 0.3 s of a 50 ms trickle is about 6 lines; reading until the flood ends would be 60.
    assert 1 <= be.stats.stale_replies <= 20


def test_board_wrong_shape_is_refused(boards: list[Board]) -> None:
    b = Board([("ID?", ["ID MRNN-PB1 SN7 1.0 4 4"])])
    boards.append(b)
    with pytest.raises(IdentityError, match="4x4, expected 2x3"):
        b.backend()
    b.script.verify()


def test_board_delivery_ticket_status_and_completion(boards: list[Board]) -> None:
    """A plan split one group per batch: the ticket names batches 5 and 6; after a restart
    the board reports batch 5 applied, so only batch 6 is staged and executed."""
    b = Board(
        [
            *BOARD_OPEN,
            ("LAST?", ["LAST 5 8"]),  # delivery_status: batch 5 (8 pulses) applied
            ("BEGIN 6 1 none", ["OK BEGIN 6"]),
            ("SHAPE 6 0 -2.0 1e-07 0", ["OK SHAPE 6 0"]),
            ("PULSE 6 0 0 1 3", ["OK PULSE 6 0 0 1 3"]),
            ("EXEC 6", ["DONE 6 3"]),
            ("LAST?", ["LAST 6 3"]),  # delivery_status again: all applied
        ]
    )
    boards.append(b)
    be = b.backend(batch_groups=1)
    ticket = be.delivery_ticket(two_groups())
    assert ticket.to_json() == {"kind": "board-batches", "first": 5, "pulses": [8, 3]}
    found = be.complete_delivery(two_groups(), ticket)
    assert (found.state, found.missing_batches) == ("partial", (6,))
    assert be.delivery_status(ticket).state == "applied"
    assert be.info().details["next_batch"] == 7
    be.close()
    b.script.verify()
