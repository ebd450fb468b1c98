"""ArC ONE protocol, byte for byte: every operation's exact lines and replies.

A scripted board on a pseudo-terminal (tests/arc_peers.py) holds the exchange each test
expects; the driver opens it with pyserial and the ArC ONE's port settings. Anything sent
that is not in the script (a pulse sent again, a stray command) fails the test.
"""

from __future__ import annotations

import numpy as np
import pytest
from arc_peers import ArcPty, ArcScript, f32, lines

from drivers import arc1 as A
from drivers import open_backend
from drivers.arc1_backend import Arc1Backend, DeliveryUnknown
from drivers.arc1_link import SerialArc1Link
from drivers.board_block import ArrayTooSmall
from protocols.backend import BackendError
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape

G_RANGE = (1e-6, 1e-4)


def opening(
    words: int,
    bits: int,
    *,
    mode: int = 2,
    read_v: str = "0.100000",
    sneak: int = 1,
    version: bytes = A.encode_version(2, 0),
) -> list[tuple[bytes, bytes]]:
    """Reset, init handshake (answered 1), read mode and voltage, firmware version."""
    return [
        *lines("00", "0", "50", str(words), str(bits), str(mode), "0", str(sneak)),
        (read_v.encode(), b"1\n"),
        *lines("01", str(mode), read_v),
        (b"999", version),
    ]


def board(pty: ArcPty, rows: int, cols: int, **kw: object) -> Arc1Backend:
    opts: dict = {
        "g_range_s": G_RANGE,
        "reset_wait_s": 0.01,
        "write_delay_s": 0.0,
        "timeout_s": 0.3,
        "version_timeout_s": 0.2,
        "retries": 1,
        **kw,
    }
    return Arc1Backend(SerialArc1Link(pty.path), rows, cols, **opts)


def plan(shape: tuple[int, int], *groups: tuple[float, float, dict], bias: str = "none"):
    out = []
    for amp, width, where in groups:
        counts = np.zeros(shape, dtype=np.int64)
        for (r, c), n in where.items():
            counts[r, c] = n
        out.append(PulseGroup(PulseShape(amplitude_v=amp, width_s=width), counts))
    return PulsePlan.from_groups(shape, out, bias=bias)  # type: ignore[arg-type]


def test_command_bytes_are_exact() -> None:
    assert A.pulse_active(2.0, 90e-9) == b"04\n2.000000\n9.000000e-08\n"
    assert A.pulse_read(3, 7, -1.25, 1e-6) == b"3\n3\n7\n-1.250000\n1.000000e-06\n"
    assert A.select(3, 7) == b"02\n3\n7\n"
    assert A.read_one(3, 7) == b"1\n3\n7\n"
    assert A.read_all(32, 31) == b"2\n1\n32\n31\n"
    assert A.set_hardware(50, 0) == b"011\n50\n0\n"
    assert A.version() == b"999\n"
    assert A.reset() == b"00\n"
    assert A.init(A.Settings(read_v=-1.5)) == b"0\n50\n32\n32\n3\n0\n1\n-1.500000\n"
    assert A.set_read(2, -1.5) == b"01\n3\n-1.500000\n"
    # the format the public hosts use for widths would send 90 ns as zero
    assert f"{90e-9:f}" == "0.000000" and A.fmt_width(90e-9) != "0.000000"


def test_open_and_close_are_exact() -> None:
    script = ArcScript([*opening(2, 3), *lines("00")])
    with ArcPty(script) as pty:
        be = board(pty, 2, 3)
        assert be.firmware == (2, 0)
        info = be.info()
        assert info.kind == "arc1" and info.details["firmware"] == "2.0"
        assert info.bias_schemes == ("none", "v2", "v3") and info.min_width_s == 90e-9
        be.close()
    script.verify()


def test_a_negative_read_voltage_switches_the_mode_and_the_envelope_refuses_it() -> None:
    # the board reads at a negative voltage in TIA4P mode 3, which both hosts switch to
    assert A.init(A.Settings(words=1, bits=1, read_v=-1.5)).split(b"\n")[4] == b"3"
    assert A.set_read(A.READ_MODES["tia4p"], -1.5) == b"01\n3\n-1.500000\n"
    # the safety envelope reads only at a positive voltage below the limits: refused before
    # any byte reaches the port
    script = ArcScript([])
    with ArcPty(script) as pty, pytest.raises(LimitViolation, match="a read needs"):
        board(pty, 1, 1, read_v=-1.5)
    script.verify()


def test_the_read_voltage_reaches_the_board_exactly() -> None:
    script = ArcScript(
        [*opening(1, 1, read_v="1.250000"), *lines("2", "1", "1"), (b"1", f32(2e5)), *lines("00")]
    )
    with ArcPty(script) as pty:
        be = board(pty, 1, 1, read_v=1.25)
        assert be.read()[0, 0] == pytest.approx(1.0 / 2e5)
        assert be.info().read_v == 1.25
        be.close()
    script.verify()


def test_classic_mode_reads_only_at_half_a_volt_refused_before_any_byte() -> None:
    script = ArcScript([])
    with ArcPty(script) as pty, pytest.raises(InputError, match="classic read mode reads only"):
        board(pty, 1, 1, read_mode="classic", read_v=0.2)
    script.verify()


def test_read_one_and_read_all_are_exact_and_word_major() -> None:
    # a 2 x 3 block from row 1, column 2 (--block 1:3,2:5): the board is told 3 word and 5
    # bit lines
    r = np.array([[1000.0 * (10 * w + b + 1) for b in range(5)] for w in range(3)])
    script = ArcScript(
        [
            *opening(3, 5),
            *lines("1", "3"),
            (b"5", f32(r[2, 4])),
            *lines("2", "1", "3"),
            (b"5", f32(*r.reshape(-1))),
        ]
    )
    with ArcPty(script) as pty:
        be = open_backend(
            "arc1", pty.path, 2, 3, block="1:3,2:5", reset_wait_s=0.0, write_delay_s=0.0,
            timeout_s=0.3, version_timeout_s=0.2, retries=1,
        )  # fmt: skip
        assert be.read(rows=[1], cols=[2])[0, 0] == pytest.approx(1.0 / r[2, 4])
        g = be.read()
        np.testing.assert_allclose(g, 1.0 / r[1:, 2:].astype(np.float32).astype(np.float64))
    script.verify()


def test_a_plan_is_select_then_pulses_then_one_fencing_read() -> None:
    shape = (2, 2)
    p = plan(shape, (2.5, 90e-9, {(0, 1): 2}), (-1.5, 1e-6, {(1, 0): 1}))
    script = ArcScript(
        [
            *opening(2, 2),
            *lines("02", "1", "2"),
            *lines("04", "2.500000", "9.000000e-08") * 2,
            *lines("02", "2", "1"),
            *lines("04", "-1.500000", "1.000000e-06"),
            *lines("1", "2"),
            (b"1", f32(1e4)),
        ]
    )
    with ArcPty(script) as pty:
        be = board(pty, *shape)
        be.apply(p)
        assert be.pulse_counts.tolist() == [[0, 2], [1, 0]]
        assert be.stats.pulses == 3
    script.verify()


def test_the_plan_bias_selects_the_boards_half_select_scheme() -> None:
    shape = (1, 2)
    v3 = plan(shape, (2.0, 1e-7, {(0, 0): 1}), bias="v3")
    v2 = plan(shape, (2.0, 1e-7, {(0, 1): 1}), bias="v2")
    none = plan(shape, (2.0, 1e-7, {(0, 1): 1}))
    pulse = lines("04", "2.000000", "1.000000e-07")
    script = ArcScript(
        [
            *opening(1, 2),
            *lines("011", "50", "0", "02", "1", "1"),
            *pulse,
            *lines("1", "1"),
            (b"1", f32(1e4)),
            *lines("011", "50", "1", "02", "1", "2"),
            *pulse,
            *lines("1", "1"),
            (b"2", f32(1e4)),
            *lines("02", "1", "2"),  # no scheme named: the board's default (v2) stays
            *pulse,
            *lines("1", "1"),
            (b"2", f32(1e4)),
        ]
    )
    with ArcPty(script) as pty:
        be = board(pty, *shape)
        for p in (v3, v2, none):
            be.apply(p)
    script.verify()


def test_pulse_and_read_is_exact() -> None:
    script = ArcScript(
        [*opening(1, 1), *lines("3", "1", "1", "2.000000"), (b"9.000000e-08", f32(5e4))]
    )
    with ArcPty(script) as pty:
        be = board(pty, 1, 1)
        g = be.pulse_and_read(0, 0, PulseShape(amplitude_v=2.0, width_s=90e-9))
        assert g == pytest.approx(2e-5)
        assert be.pulse_counts[0, 0] == 1
    script.verify()


@pytest.mark.parametrize(
    ("amp", "width", "limits", "match"),
    [
        (13.0, 1e-7, SafetyLimits(max_set_v=20.0), r"beyond the ArC ONE's \+-12 V"),
        (2.0, 80e-9, SafetyLimits(), r"outside the ArC ONE's \[9e-08, 10\] s"),
        (2.0, 12.0, SafetyLimits(max_width_s=20.0), r"outside the ArC ONE's"),
        (2.0, 1e-7, SafetyLimits(max_half_select_v=0.9), r"see 1 V, over max_half_select_v"),
    ],
)
def test_what_the_board_cannot_do_is_refused_before_the_first_byte(
    amp: float, width: float, limits: SafetyLimits, match: str
) -> None:
    script = ArcScript(opening(1, 1))
    with ArcPty(script) as pty:
        be = board(pty, 1, 1, limits=limits)
        with pytest.raises(InputError, match=match) as err:
            be.apply(plan((1, 1), (amp, width, {(0, 0): 1})))
        assert isinstance(err.value, InputError | LimitViolation)
        assert be.pulse_counts.sum() == 0
    script.verify()  # nothing after the opening


def test_a_timeout_names_the_command_and_a_read_is_retried_after_a_resync() -> None:
    script = ArcScript(
        [
            *opening(1, 1),
            *lines("2", "1", "1", "1"),  # read all (one device): no reply
            *opening(1, 1)[:-1],  # resync: reset and init again
            *lines("2", "1", "1"),
            (b"1", f32(4e4)),
        ]
    )
    with ArcPty(script) as pty:
        be = board(pty, 1, 1, retries=2)
        assert be.read()[0, 0] == pytest.approx(2.5e-5)
        assert be.stats.resyncs == 2  # at open, and after the timeout
    script.verify()
    script = ArcScript([*opening(1, 1), *lines("2", "1", "1", "1")])
    with ArcPty(script) as pty:
        be = board(pty, 1, 1)
        with pytest.raises(BackendError, match=r"no complete reply to `2 1 1 1` \(read all\)"):
            be.read()
    script.verify()


@pytest.mark.parametrize("bad", [-5.0, 0.0, float("nan"), float("inf")])
def test_a_reply_that_is_not_a_finite_positive_resistance_is_refused(bad: float) -> None:
    script = ArcScript([*opening(2, 4), *lines("1", "2"), (b"3", f32(bad))])
    with ArcPty(script) as pty:
        be = board(pty, 2, 4)
        with pytest.raises(BackendError, match="for W2 B3: not a finite positive resistance"):
            be.read(rows=[1], cols=[2])
    script.verify()


def test_a_plan_whose_fence_fails_is_never_sent_again() -> None:
    script = ArcScript(
        [
            *opening(1, 1),
            *lines("02", "1", "1"),
            *lines("04", "2.000000", "1.000000e-07") * 3,
            *lines("1", "1", "1"),  # the fencing read: no reply
        ]
    )
    with ArcPty(script) as pty:
        be = board(pty, 1, 1)
        with pytest.raises(DeliveryUnknown, match="3 of the plan's 3 pulses were sent") as err:
            be.apply(plan((1, 1), (2.0, 1e-7, {(0, 0): 3})))
        assert "nothing is sent again" in str(err.value)
        assert "`1 1 1` (read one device)" in str(err.value)
        be.close()  # out of step: no reset on close, no more bytes at all
    script.verify()


def test_old_firmware_without_a_version_reply() -> None:
    script = ArcScript([*opening(1, 1, version=b""), *lines("00")])
    with ArcPty(script) as pty:
        be = board(pty, 1, 1)
        assert be.firmware is None and be.info().details["firmware"] == "unknown"
        be.close()
    script.verify()


def test_an_init_not_confirmed_fails_the_open() -> None:
    steps = opening(1, 1)
    steps[8] = (steps[8][0], b"0\n")
    script = ArcScript(steps[:9])
    with ArcPty(script) as pty, pytest.raises(BackendError, match="no init handshake") as err:
        board(pty, 1, 1)
    assert "answered b'0' to `0 50 1 1 2 0 1 0.100000` (init), not the confirmation 1" in str(
        err.value
    )
    script.verify()


def test_addresses_are_one_based_and_checked() -> None:
    with pytest.raises(A.ArgError, match="W0 B1"):
        A.check_address(0, 1, 32, 32)
    with pytest.raises(A.ArgError, match="W3 B5 is outside the configured 2 x 5"):
        A.check_address(3, 5, 2, 5)
    A.check_address(32, 32, 32, 32)


def test_a_block_beyond_the_board_is_refused_before_the_port_is_opened() -> None:
    with pytest.raises(
        ArrayTooSmall, match="needs a 33 x 4 block of devices; the board is 32 x 32"
    ):
        open_backend("arc1", "/dev/does-not-exist", 33, 4, limits=SafetyLimits())
    with pytest.raises(ArrayTooSmall, match=r"\(block 30:33,0:4 \(rows 30-32, columns 0-3\)\)"):
        open_backend("arc1", "/dev/does-not-exist", 3, 4, block="30:33,0:4")
    with pytest.raises(ArrayTooSmall, match="needs --array 32x40; the board is 32 x 32"):
        open_backend("arc1", "/dev/does-not-exist", 3, 4, array="32x40")
