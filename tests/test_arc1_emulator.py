"""The emulated ArC ONE: the firmware's state machine, its transports, its faults."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drivers import arc1 as A
from drivers import open_backend
from drivers.arc1_link import SerialArc1Link
from drivers.emu_arc1 import Arc1Core, Arc1Emulator
from drivers.emu_array import make_array
from drivers.errors import LinkLost
from drivers.faults import FaultConfig
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape
from sim_backend.readout import resistance_f32

FAST = {"reset_wait_s": 0.0, "write_delay_s": 0.0, "timeout_s": 0.5, "version_timeout_s": 0.2}


def core(rows: int = 3, cols: int = 4, preset: str = "epiram", **kw: object) -> Arc1Core:
    return Arc1Core(make_array(rows, cols, preset=preset, seed=2), **kw)  # type: ignore[arg-type]


def init(c: Arc1Core, words: int = 3, bits: int = 4, sneak: int = 1) -> bytes:
    return c.handle(A.init(A.Settings(words=words, bits=bits, sneak_path=sneak)))


def test_reads_and_pulses_need_an_init_and_a_reset_forgets_it() -> None:
    c = core()
    assert c.handle(A.read_one(1, 1)) == b""  # ignored before the handshake
    assert init(c) == b"1\n"
    assert len(c.handle(A.read_one(1, 1))) == 4
    c.handle(A.reset())
    assert c.handle(A.read_all(3, 4)) == b""
    assert any("not initialised" in why for why in c.ignored)


def test_read_all_is_word_major_float32_resistance() -> None:
    c = core()
    init(c)
    r = A.decode_floats(c.handle(A.read_all(3, 4))).reshape(3, 4)
    g = c.array.read()
    np.testing.assert_array_equal(r, (1.0 / g).astype(np.float32))
    assert A.decode_floats(c.handle(A.read_one(2, 3)))[0] == r[1, 2]


def test_the_board_refuses_what_it_cannot_do_without_a_reply() -> None:
    c = core()
    assert c.handle(b"0\n50\n33\n4\n2\n0\n1\n0.500000\n") == b"0\n"  # 33 word lines
    init(c)
    c.handle(b"04\n2.000000\n1.000000e-07\n")  # nothing selected
    c.handle(A.select(3, 4))
    for bad in (b"04\n13.000000\n1.000000e-07\n", b"04\n2.000000\n5.000000e-08\n"):
        c.handle(bad)
    assert c.handle(A.read_one(4, 1)) == b""  # W4 is beyond the configured 3 word lines
    c.handle(b"hello\n")  # not a job code
    assert c.log.entries == []
    assert len(c.ignored) == 6


def test_a_width_written_with_percent_f_is_no_pulse() -> None:
    """%f turns 90 ns into 0.000000; the board takes that for a width below 90 ns."""
    c = core()
    init(c)
    c.handle(A.select(1, 1))
    c.handle(b"04\n2.000000\n" + f"{90e-9:f}".encode() + b"\n")
    assert c.log.entries == []
    c.handle(A.pulse_active(2.0, 90e-9))
    assert [(e.word, e.bit, e.amplitude_v, e.width_s) for e in c.log.entries] == [(1, 1, 2.0, 9e-8)]


def test_pulses_reach_the_array_as_the_plan_would_at_the_next_read() -> None:
    c = core()
    reference = make_array(3, 4, preset="epiram", seed=2)
    init(c)
    counts = np.array([[0, 2, 0, 0], [1, 0, 0, 3], [0, 0, 0, 0]])
    for r, col in zip(*np.nonzero(counts), strict=True):
        c.handle(A.select(r + 1, col + 1))
        for _ in range(counts[r, col]):
            c.handle(A.pulse_active(2.0, 1e-7))
    c.handle(A.read_all(3, 4))
    reference.apply(
        PulsePlan.from_groups(
            (3, 4), [PulseGroup(PulseShape(amplitude_v=2.0, width_s=1e-7), counts)], bias="v2"
        )
    )
    np.testing.assert_array_equal(c.array.read(), reference.read())
    np.testing.assert_array_equal(c.log.counts(3, 4), counts)


def test_the_old_firmware_mode_does_not_answer_the_version_query() -> None:
    assert core(firmware=None).handle(A.version()) == b""
    assert A.decode_version(core().handle(A.version())) == (2, 0)


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_the_driver_over_a_pty_and_a_loopback_socket(transport: str) -> None:
    c = core(preset="ideal")  # 2 V moves it (EpiRAM's thresholds are 3.75 / 2.25 V)
    with (
        Arc1Emulator(c, transport=transport) as emu,
        open_backend("arc1", emu.url, 3, 4, limits=SafetyLimits(), **FAST) as be,
    ):
        where = emu.url if transport == "tcp" else os.path.realpath(emu.url)
        assert where.startswith("socket://127.0.0.1:" if transport == "tcp" else "/dev/pts/")
        g0 = be.read()
        counts = np.zeros((3, 4), dtype=np.int64)
        counts[1, 2] = 4
        be.apply(
            PulsePlan.from_groups(
                (3, 4), [PulseGroup(PulseShape(amplitude_v=2.0, width_s=1e-7), counts)]
            )
        )
        g1 = be.read()
    assert g1[1, 2] > g0[1, 2] and np.count_nonzero(g1 != g0) == 1
    assert c.log.counts(3, 4).tolist() == counts.tolist()


def test_a_dropped_link_resets_the_board_and_the_driver_resynchronises_for_reads() -> None:
    c = core()
    faults = FaultConfig(disconnect_rate=0.3, seed=4)
    with (
        Arc1Emulator(c, faults, deaf_s=0.0) as emu,
        open_backend("arc1", emu.url, 3, 4, retries=30, **{**FAST, "timeout_s": 0.1}) as be,
    ):
        for _ in range(20):
            np.testing.assert_allclose(be.read(), c.array.read(), rtol=1e-6)
        assert be.stats.resyncs > 1 and c.resets > 1


@pytest.mark.parametrize("transport", [[], ["--tcp", "0"]])
def test_mrnn_hil_emulate_arc1_as_a_process(transport: list[str], tmp_path: Path) -> None:
    log = tmp_path / "pulses.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "emulate", "arc1", *transport, "--rows", "2",
         "--cols", "3", "--preset", "ideal", "--reset-time", "0", "--duration", "60",
         "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        assert ready, "the emulator printed nothing"
        url = proc.stdout.readline().decode().strip()
        where = url if transport else os.path.realpath(url)
        assert where.startswith("socket://127.0.0.1:" if transport else "/dev/pts/")
        counts = np.zeros((2, 3), dtype=np.int64)
        counts[1, 2] = 2
        shape = PulseShape(amplitude_v=2.0, width_s=9e-8)
        with open_backend("arc1", url, 2, 3, **FAST) as be:
            g0 = be.read()
            be.apply(PulsePlan.from_groups((2, 3), [PulseGroup(shape, counts)]))
            assert be.read()[1, 2] > g0[1, 2]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert log.read_text().splitlines() == [
        "seq,word,bit,amplitude_v,width_s",
        "0,2,3,2.0,9e-08",
        "1,2,3,2.0,9e-08",
    ]


def test_a_block_of_the_board_addresses_its_own_word_and_bit_lines() -> None:
    c = core(3, 3)
    counts = np.zeros((2, 2), dtype=np.int64)
    counts[0, 0] = 1
    shape = PulseShape(amplitude_v=2.0, width_s=1e-7)
    with (
        Arc1Emulator(c) as emu,
        open_backend("arc1", emu.url, 2, 2, block="1:3,1:3", **FAST) as be,
    ):
        assert be.info().details["block"] == "1:3,1:3"
        g = be.read()
        r = resistance_f32(c.array.read()[1:, 1:])
        np.testing.assert_array_equal(g, 1.0 / r.astype(np.float64))
        be.apply(PulsePlan.from_groups((2, 2), [PulseGroup(shape, counts)]))
    assert [(e.word, e.bit) for e in c.log.entries] == [(2, 2)]  # the block's first device


def test_a_second_opener_of_the_boards_port_is_refused() -> None:
    """Two openers of one port would each read replies meant for the other (a second
    mrnn-hil, or a reconnect to a pty path the system gave to another board): the port is held
    for exclusive use, and the first session reads on, undisturbed."""
    c = core(preset="ideal")
    with Arc1Emulator(c) as emu, open_backend("arc1", emu.url, 3, 4, **FAST) as be:
        g0 = be.read()
        with pytest.raises(LinkLost, match="exclusively lock"):
            SerialArc1Link(emu.url, open_timeout_s=0.2)
        np.testing.assert_array_equal(be.read(), g0)
