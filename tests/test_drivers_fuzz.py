"""Fuzzing the emulators: random bytes, truncated and overlong lines, unknown commands.

Each emulator must answer with an error (or stay silent where the grammar says a command has
no reply) and keep answering valid requests afterwards: it never crashes and never wedges.
The firmware cores are fuzzed in process, then a smaller number of examples goes through
the real pty and TCP servers.
"""

from __future__ import annotations

import binascii
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from property_support import Reach, examples

from drivers import board as B
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_kxci import KxciCore
from drivers.emu_scpi import MatrixCore, SmuCore, Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from drivers.transport import SerialTransport

KNOWN = {"ID?", "STAT?", "LAST?", "RANGE?", "RARR?", "ABORT", "SAFE"}


def frame(tag: str, body: str) -> bytes:
    head = f"{tag} {body}".encode()
    return head + f"*{binascii.crc_hqx(head, 0xFFFF):04X}".encode()


def valid_frame_text(body: str) -> st.SearchStrategy[bytes]:
    return st.just(frame("00AA", body))


BEGIN_FRAME = frame("0002", "BEGIN 1 1 none")
printable_body = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="*"),
    min_size=1,
    max_size=80,
)
garbage = st.one_of(
    st.binary(max_size=300),
    printable_body.map(lambda s: frame("0001", s)[: len(s) // 2]),  # truncated frames
    st.integers(0, len(BEGIN_FRAME) - 1).map(lambda k: BEGIN_FRAME[:k]),
    st.binary(min_size=1, max_size=40).map(lambda b: b * 2000),  # overlong
)


@pytest.fixture(scope="module")
def core() -> BoardCore:
    return BoardCore(make_array(2, 3, preset="ideal", seed=1))


def assert_board_alive(core: BoardCore) -> None:
    replies = core.handle(frame("0F0F", "ID?"))
    assert len(replies) == 1
    assert B.decode(replies[0]) == ("0F0F", "ID MRNN-PB1 EMU0001 2.0 2 3")


def test_board_core_answers_garbage_with_errors(core: BoardCore) -> None:
    reach = Reach("test_board_core_answers_garbage_with_errors")

    @settings(max_examples=examples(300))
    @given(data=garbage)
    def check(data: bytes) -> None:
        reach.example()
        last = core.last_batch
        for line in data.split(b"\n") or [b""]:
            if not line:
                continue
            reach.hit("a line reached the board")
            replies = core.handle(line)
            assert len(replies) == 1
            _tag, body = B.decode(replies[0])
            assert body.startswith("ERR "), body
        assert core.last_batch == last
        assert_board_alive(core)

    check()
    reach.require("a line reached the board", 0.8)


def test_board_core_refuses_unknown_commands(core: BoardCore) -> None:
    reach = Reach("test_board_core_refuses_unknown_commands")

    @settings(max_examples=examples(300))
    @given(body=printable_body)
    def check(body: str) -> None:
        reach.example()
        if body.strip() in KNOWN or body.split(" ")[0] in KNOWN:
            return
        if body.startswith(("RROW? ", "BEGIN ", "EXEC ", "WDOG ")):
            return
        last = core.last_batch
        replies = core.handle(frame("1234", body))
        assert len(replies) == 1
        tag, reply = B.decode(replies[0])
        assert tag == "1234"
        assert reply.startswith("ERR "), reply
        reach.hit("refused as a command (its own tag)")
        assert core.last_batch == last
        assert_board_alive(core)

    check()
    reach.require("refused as a command (its own tag)", 0.8)


def test_board_core_refuses_a_batch_its_array_refuses() -> None:
    """A core over an array with its own limits (3 V here) answers ERR 3, applies nothing,
    and keeps serving; it does not raise out of `handle` (which would kill the emulator)."""
    from sim_backend import SimulatedCrossbar

    core = BoardCore(SimulatedCrossbar(2, 3, preset="ideal", seed=1))
    for k, body in enumerate(["BEGIN 1 1 none", "SHAPE 1 0 5.0 1e-07 0", "ROW 1 0 0 1,0,0"]):
        assert B.decode(core.handle(frame(f"000{k}", body))[0])[1].startswith("OK ")
    tag, body = B.decode(core.handle(frame("0009", "EXEC 1"))[0])
    assert (tag, body.split(" ")[:2]) == ("0009", ["ERR", "3"])
    assert "exceeds max_set_v=3 V" in body
    assert core.last_batch == 0 and core.array.pulse_counts.sum() == 0
    assert_board_alive(core)


@pytest.fixture(scope="module")
def station() -> Station:
    return Station(make_array(2, 2, preset="ideal", seed=1), min_width_s=1e-9)


def test_scpi_cores_survive_garbage(station: Station) -> None:
    reach = Reach("test_scpi_cores_survive_garbage")

    @settings(max_examples=examples(300))
    @given(data=st.one_of(st.binary(max_size=300), printable_body.map(str.encode)))
    def check(data: bytes) -> None:
        reach.example()
        if data.strip().upper() in (b"*RST", b":OUTP ON", b":INIT (@1)"):
            return
        smu, matrix = SmuCore(station), MatrixCore(station)
        for core in (smu, matrix):
            for line in data.split(b"\n"):
                replies = core.handle(line)
                assert all(isinstance(r, str) for r in replies)
            assert core.handle(b"*IDN?")[0].split(",")[1].strip() in ("B2901A", "MODEL 707B")
        code = smu.handle(b":SYST:ERR?")[0]
        assert code.startswith(("+0,", "-1", "-2", "-3"))
        if not code.startswith("+0,"):
            reach.hit("the SMU queued an error")

    check()
    reach.require("the SMU queued an error", 0.5)


def test_kxci_core_answers_every_message_once(station: Station) -> None:
    """Every message gets exactly one reply (a refusal is a negative number), and the
    instrument keeps answering its identity."""
    reach = Reach("test_kxci_core_answers_every_message_once")

    @settings(max_examples=examples(300))
    @given(data=st.one_of(st.binary(max_size=300), printable_body.map(str.encode)))
    def check(data: bytes) -> None:
        reach.example()
        core = KxciCore(station)
        for line in data.split(b"\0"):
            replies = core.handle(line)
            assert len(replies) == 1 and isinstance(replies[0], str)
            if replies[0].startswith("-"):
                reach.hit("refused")
        assert core.handle(b"ID") == ["KI4200A V1.13 (mrnn-hil emulator)"]

    check()
    reach.require("refused", 0.5)


# -- through the real servers ---------------------------------------------------------------
@pytest.fixture(scope="module")
def serial_emulator() -> Iterator[SerialEmulator]:
    with SerialEmulator(BoardCore(make_array(2, 3, preset="ideal", seed=1))) as emu:
        yield emu


@pytest.fixture(scope="module")
def scpi_emulator() -> Iterator[ScpiEmulator]:
    with ScpiEmulator(Station(make_array(2, 2, preset="ideal", seed=1))) as emu:
        yield emu


def _id_after(port: SerialTransport, tag: str) -> str:
    port.write_line(frame(tag, "ID?"))
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        line = port.read_line(deadline - time.monotonic())
        try:
            rtag, body = B.decode(line)
        except B.FrameError:
            continue
        if rtag == tag:
            return body
    raise AssertionError("the board stopped answering")


def test_serial_emulator_survives_garbage_on_the_pty(serial_emulator: SerialEmulator) -> None:
    reach = Reach("test_serial_emulator_survives_garbage_on_the_pty")

    @settings(max_examples=examples(25))
    @given(data=garbage)
    def check(data: bytes) -> None:
        reach.example()
        before = serial_emulator.core.errors
        port = SerialTransport(serial_emulator.path)
        try:
            port.write_line(data)
            assert _id_after(port, "7E57").startswith("ID MRNN-PB1 ")
        finally:
            port.close()
        if serial_emulator.core.errors > before:
            reach.hit("the board answered an error")

    check()
    reach.require("the board answered an error", 0.5)


def test_serial_emulator_reports_an_overlong_line(serial_emulator: SerialEmulator) -> None:
    port = SerialTransport(serial_emulator.path)
    try:
        port.write_line(b"A" * (B.MAX_FRAME + 10))
        tag, body = B.decode(port.read_line(3.0))
        assert (tag, body.split(" ")[:2]) == ("----", ["ERR", "6"])
        assert _id_after(port, "0101").startswith("ID ")
    finally:
        port.close()


def test_scpi_emulator_survives_garbage_on_tcp(scpi_emulator: ScpiEmulator) -> None:
    reach = Reach("test_scpi_emulator_survives_garbage_on_tcp")

    @settings(max_examples=examples(25))
    @given(data=st.one_of(st.binary(max_size=300), printable_body.map(str.encode)))
    def check(data: bytes) -> None:
        reach.example()
        if b"*RST" in data.upper():
            return
        survive(scpi_emulator, data)
        if data.strip():
            reach.hit("garbage reached the SMU")

    check()
    reach.require("garbage reached the SMU", 0.5)


def survive(scpi_emulator: ScpiEmulator, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", scpi_emulator.smu_port), timeout=3.0) as s:
        s.sendall(data.replace(b"\n", b" ") + b"\n*CLS;*IDN?\n")
        reply = b""
        while not reply.endswith(b"B2901A,EMU0001,mrnn-hil-emulator-1.0\n"):
            chunk = s.recv(4096)
            assert chunk, "connection closed"
            reply += chunk
        s.sendall(b":SYST:ERR?\n")
        assert s.recv(4096) == b'+0,"No error"\n'
