"""The pulse board against emulator modes that behave like a real board on a real line.

An Arduino-class board resets when DTR is asserted, and an operating system asserts it
whenever the port is opened; a batch can take longer than the host expects; a host can
die in the middle of a batch; line noise can corrupt a frame in a way its checksum does
not see. Each test fails when the driver fix it covers is taken out. The board is served
over RFC 2217 (pyserial's own client and protocol) where its modem lines matter, else on a
pseudo-terminal.
"""

from __future__ import annotations

import binascii
import logging
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from drivers import board as B
from drivers import open_backend
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_serial import BoardLine, SerialEmulator
from drivers.errors import IdentityError, LinkLost
from drivers.faults import crc16_blind
from drivers.serial_backend import PulseBoardBackend
from drivers.transport import SerialTransport
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape

MANY = SafetyLimits(max_pulses_per_device_per_update=2000)
# pyserial's RFC 2217 client still names its reader thread the old way
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:serial.rfc2217")


def plan(shape: tuple[int, int], counts: dict[tuple[int, int], int]) -> PulsePlan:
    grid = np.zeros(shape, dtype=np.int64)
    for (r, c), n in counts.items():
        grid[r, c] = n
    return PulsePlan.from_groups(
        shape, [PulseGroup(PulseShape(amplitude_v=2.0, width_s=1e-7), grid)]
    )


def board(shape: tuple[int, int], exec_s_per_pulse: float = 0.0) -> BoardCore:
    return BoardCore(make_array(*shape, preset="ideal", seed=1), exec_s_per_pulse=exec_s_per_pulse)


# -- DTR and reopening -----------------------------------------------------------------------
def test_the_port_opens_with_dtr_and_rts_held() -> None:
    """A board that resets when DTR is asserted: two sessions open, pulse and close it
    without a single reset."""
    core = board((2, 3))
    p = plan((2, 3), {(0, 1): 3})
    with SerialEmulator(core, link="rfc2217", line=BoardLine(resets_on_dtr=True)) as emu:
        for _ in range(2):
            with open_backend("serial", emu.path, 2, 3) as be:
                be.apply(p)
        assert emu.opens == 2
    assert core.resets == 0
    assert [e.pulses for e in core.log.entries] == [3, 3]


def test_a_replugged_port_leading_to_another_board_gets_nothing_but_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The board is unplugged mid-run and the port now leads to another board (a USB
    replug; an operating system handing the path to another device). The host reopens the
    lost port, asks `ID?` first, and stops: the other board is staged and pulsed nothing."""
    first, other = (
        board((2, 3)),
        BoardCore(make_array(2, 3, preset="ideal", seed=2), serial="EMU0002"),
    )
    p = plan((2, 3), {(0, 1): 3})
    with SerialEmulator(first, link="rfc2217") as emu:
        be = PulseBoardBackend(SerialTransport(emu.path), 2, 3, timeout_s=0.5)
        be.apply(p)
        emu.replug(other)
        with pytest.raises(IdentityError, match=r"EMU0002 .* instead of MRNN-PB.* EMU0001"):
            be.apply(p)
        caplog.clear()
        caplog.set_level(logging.INFO, logger="drivers.serial_backend")
        be.close()  # not even ABORT or SAFE: the other board is another experiment's
        assert be.stats.reconnects >= 1
    # the error already told the user; the close adds no second warning (the run's board
    # goes SAFE by its watchdog), so a command line stays one line
    assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "watchdog after 5 s" in caplog.text
    assert set(other.commands) == {"ID?"}
    assert [e.pulses for e in first.log.entries] == [3]
    assert other.log.entries == [] and other._staging is None  # nothing staged either
    assert int(other.array.pulse_counts.sum()) == 0


def test_a_second_process_cannot_open_a_port_in_use() -> None:
    """Two openers of one port would each read replies meant for the other (a second
    mrnn-hil on the same board, a reconnecting one whose path the system gave to another
    device): the port is held for exclusive use, and the first session is undisturbed."""
    core = board((2, 3))
    p = plan((2, 3), {(1, 2): 4})
    with SerialEmulator(core) as emu, open_backend("serial", emu.path, 2, 3) as be:
        with pytest.raises(LinkLost, match="exclusively lock") as refused:
            SerialTransport(emu.path, open_timeout_s=0.2)
        # the refusal names who holds the port (here: this process, through the backend)
        assert f"in use by process {os.getpid()} (this process)" in str(refused.value)
        be.apply(p)
        assert be.stats.retries == 0
    assert [e.pulses for e in core.log.entries] == [4]


def test_an_exec_timeout_is_settled_on_the_same_link() -> None:
    """The board takes 0.6 s for a batch the host expected to be instant, and every open
    of its port resets it. The host asks on the same link (STAT?, LAST?) instead of
    reopening, so the batch runs once, whole."""
    core = board((2, 3), exec_s_per_pulse=0.02)
    p = plan((2, 3), {(0, 0): 10, (1, 2): 20})
    line = BoardLine(reset_on_open=True, boot_s=0.05)
    with SerialEmulator(core, link="rfc2217", line=line) as emu:
        be = PulseBoardBackend(SerialTransport(emu.path), 2, 3, timeout_s=0.2, per_pulse_s=0.0)
        with be:
            be.apply(p)
        assert be.stats.reconnects == 0 and be.stats.retries >= 1
    assert core.resets == 1  # opening the port, before anything was sent
    assert core.interrupted == []
    assert [(e.batch, e.pulses) for e in core.log.entries] == [(1, 30)]
    np.testing.assert_array_equal(core.array.pulse_counts, p.counts_per_device())


# -- ABORT, SAFE and the watchdog -------------------------------------------------------------
class _DiesDuringExec(PulseBoardBackend):
    """A host that sends EXEC and is then interrupted (Ctrl-C, a crash) while it waits."""

    def _await_exec(self, batch: int, expected_s: float) -> str:
        self._tag = (self._tag + 1) % 0x10000
        self.transport.write_line(B.encode(B.tag_of(self._tag), B.execute(batch)))
        time.sleep(0.1)  # the batch is running on the board
        raise KeyboardInterrupt


def test_close_aborts_a_running_batch_and_leaves_the_board_safe() -> None:
    core = board((2, 3), exec_s_per_pulse=0.02)
    with SerialEmulator(core) as emu:
        be = _DiesDuringExec(SerialTransport(emu.path), 2, 3)
        with be, pytest.raises(KeyboardInterrupt):
            be.apply(plan((2, 3), {(0, 0): 50}))  # a second of pulses
    assert core.safe
    (cut,) = core.interrupted
    assert cut.by == "abort" and 0 < cut.pulses < 50
    assert (core.last_batch, core.last_pulses) == (1, cut.pulses)  # recorded as fired
    assert int(core.array.pulse_counts.sum()) == cut.pulses


def test_the_watchdog_makes_a_silent_hosts_board_safe() -> None:
    """The host dies in the middle of a batch without closing anything: after the
    watchdog's time of silence the board stops the batch and goes SAFE by itself."""
    core = board((2, 3), exec_s_per_pulse=0.02)
    with SerialEmulator(core) as emu:
        be = _DiesDuringExec(SerialTransport(emu.path), 2, 3, watchdog_s=0.2)
        with pytest.raises(KeyboardInterrupt):
            be.apply(plan((2, 3), {(1, 1): 50}))
        be.transport.close()  # gone, without a word
        time.sleep(0.5)
    assert core.watchdog_trips >= 1 and core.safe
    (cut,) = core.interrupted
    assert cut.by == "watchdog" and cut.pulses < 50


def test_a_long_batch_keeps_the_watchdog_fed() -> None:
    """A batch longer than the watchdog's time: the waiting host keeps the link alive, so
    the batch runs to its end."""
    core = board((2, 3), exec_s_per_pulse=0.02)
    p = plan((2, 3), {(0, 2): 40})  # 0.8 s
    with SerialEmulator(core) as emu:
        be = PulseBoardBackend(
            SerialTransport(emu.path), 2, 3, watchdog_s=0.3, per_pulse_s=0.02, timeout_s=0.5
        )
        with be:
            be.apply(p)
        assert be.stats.keepalives >= 2
    assert core.watchdog_trips == 0 and core.interrupted == []
    assert [(e.batch, e.pulses) for e in core.log.entries] == [(1, 40)]


# -- frames that line noise corrupts where a 16-bit check is blind ---------------------------
def _counts_region(frame: bytes) -> tuple[bytes, int]:
    """The part of a ROW frame before the '*', and where its counts start."""
    head = frame[: frame.rindex(b"*")]
    return head, head.rindex(b" ") + 1


def _tamper_first_row(corrupt: Callable[[bytes], bytes | None]) -> tuple[list[bytes], Callable]:
    """A `BoardLine.tamper` that corrupts the first ROW frame once (keeping its checksum)."""
    done: list[bytes] = []

    def tamper(line: bytes) -> bytes:
        if done or b" ROW " not in line:
            return line
        head = line[: line.rindex(b"*")]
        bad = corrupt(head)
        if bad is None:
            return line
        done.append(bad)
        return bad + line[len(head) :]

    return done, tamper


def _digits(head: bytes, start: int) -> list[int]:
    return [i for i in range(start, len(head)) if head[i : i + 1].isdigit()]


def test_a_long_frame_is_checked_with_crc32() -> None:
    """A ROW frame over 64 bytes, hit by noise that keeps its CRC-16 and even the sum of
    its counts (so the board's echo cannot tell): with CRC-32 on long frames the board
    refuses it, the host sends it again, and every device gets its own count."""
    counts = [1010, 1101, 1001, 1110, 1011, 1100, 1000, 1111, 1010, 1101, 1110, 1001]
    shape = (2, len(counts))
    p = plan(shape, {(0, c): n for c, n in enumerate(counts)})

    def corrupt(head: bytes) -> bytes | None:
        _, start = _counts_region(head + b"*")
        digits = _digits(head, start)
        # balanced pairs: a 0 -> 1 and a 1 -> 0 at the same decimal place (sum unchanged)
        by_place: dict[int, dict[bytes, list[int]]] = {}
        numbers = head[start:].split(b",")
        pos = start
        for text in numbers:
            for k, ch in enumerate(text):
                place = len(text) - 1 - k
                by_place.setdefault(place, {}).setdefault(bytes([ch]), []).append(pos + k)
            pos += len(text) + 1
        pairs = [
            [z * 8 + 7, o * 8 + 7]
            for place in by_place.values()
            for z, o in zip(place.get(b"0", []), place.get(b"1", []), strict=False)
        ]
        assert all(i // 8 in digits for pair in pairs for i in pair)
        return crc16_blind(head, pairs)

    done, tamper = _tamper_first_row(corrupt)
    core = board(shape)
    with (
        SerialEmulator(core, line=BoardLine(tamper=tamper)) as emu,
        open_backend("serial", emu.path, *shape, limits=MANY) as be,
    ):
        be.apply(p)
    (bad,) = done
    good = bytes(_counts_region(B.encode("0000", B.row(1, 0, 0, counts)))[0])[5:]
    assert len(bad) > B.LONG_FRAME and bad[5:] != good  # a long frame, really corrupted
    assert binascii.crc_hqx(bad, 0xFFFF) == binascii.crc_hqx(bad[:5] + good, 0xFFFF)
    assert sum(int(x) for x in bad[bad.rindex(b" ") + 1 :].split(b",")) == sum(counts)
    np.testing.assert_array_equal(core.array.pulse_counts, p.counts_per_device())


def test_an_echo_that_differs_stages_the_batch_again() -> None:
    """A short ROW frame (CRC-16) hit by noise its checksum does not see: the board stores
    other counts and echoes their sum; the host sees the echo differ and stages the batch
    again, so no device gets a count it was not sent."""
    counts = [1011, 1101, 1110, 1001]
    shape = (2, len(counts))
    p = plan(shape, {(0, c): n for c, n in enumerate(counts)})

    def corrupt(head: bytes) -> bytes | None:
        _, start = _counts_region(head + b"*")
        # the low three bits of a 0 or 1 digit: any of them flipped leaves a digit
        groups = [[d * 8 + b] for d in _digits(head, start) for b in (5, 6, 7)]
        return crc16_blind(head, groups)

    done, tamper = _tamper_first_row(corrupt)
    core = board(shape)
    with (
        SerialEmulator(core, line=BoardLine(tamper=tamper)) as emu,
        open_backend("serial", emu.path, *shape, limits=MANY) as be,
    ):
        be.apply(p)
        assert be.stats.echo_mismatches == 1
    (bad,) = done
    assert len(bad) <= B.LONG_FRAME  # a short frame: CRC-16 by design
    assert sum(int(x) for x in bad[bad.rindex(b" ") + 1 :].split(b",")) != sum(counts)
    np.testing.assert_array_equal(core.array.pulse_counts, p.counts_per_device())
    assert [e.pulses for e in core.log.entries] == [sum(counts)]


def test_a_port_let_go_a_moment_later_is_opened() -> None:
    """An opener that closes the port a moment after another asks for it (a session ending
    as the next begins) does not fail the next open: a held lock is waited for, briefly."""
    with SerialEmulator(board((2, 3))) as emu:
        first = SerialTransport(emu.path)
        closer = threading.Timer(0.3, first.close)
        closer.start()
        try:
            second = SerialTransport(emu.path)  # no reconnect wait: the first open of a session
        finally:
            closer.join()
        second.close()
