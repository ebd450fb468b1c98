"""The entry points: `drivers.open_backend` (options, errors, dry runs, limits before the first
byte) and `mrnn-hil emulate` run as a real process."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from drivers import open_backend
from drivers.errors import LinkLost
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape


def one_pulse(shape: tuple[int, int], amp: float = 2.0, width: float = 1e-7) -> PulsePlan:
    counts = np.zeros(shape, dtype=np.int64)
    counts[0, 1] = 2
    return PulsePlan.from_groups(
        shape, [PulseGroup(PulseShape(amplitude_v=amp, width_s=width), counts)]
    )


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("gpib", {}, "backend kind 'gpib'"),
        ("visa", {"resource": "TCPIP::127.0.0.1::1::SOCKET"}, "matrix resource"),
        ("serial", {}, "needs --port"),
        ("serial", {"port": "loop://", "colour": "red"}, "option 'colour' is not known"),
        ("serial", {"port": "loop://", "timeout_s": "soon"}, "timeout_s='soon': expected float"),
        ("serial", {"port": "loop://", "timeout_s": -1}, "must be > 0"),
        ("serial", {"port": "loop://", "g_min_s": 1e-6}, "give both"),
        ("serial", {"port": "loop://", "batch_groups": 0}, r"batch_groups=0: allowed 1\.\.64"),
        ("serial", {"port": "loop://", "batch_groups": "x"}, "batch_groups='x': expected int"),
    ],
)
def test_bad_options_are_input_errors(kind: str, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        open_backend(kind, rows=2, cols=3, **kwargs)


def test_a_missing_port_is_a_link_error() -> None:
    with pytest.raises(LinkLost, match="cannot open serial port"):
        open_backend("serial", "/dev/ttyNOWHERE-mrnn", 2, 3)


def test_a_closed_tcp_port_is_a_link_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LinkLost, match=r"refused|cannot open"):
        open_backend(
            "visa",
            f"TCPIP::127.0.0.1::{port}::SOCKET",
            2,
            3,
            matrix_resource=f"TCPIP::127.0.0.1::{port}::SOCKET",
        )


@pytest.mark.parametrize("kind", ["serial", "visa"])
def test_dry_run_records_exactly_what_is_sent_and_nothing_unsafe(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "stream.txt"
    limits = SafetyLimits(max_set_v=2.5)
    be = (
        open_backend(kind, None, 2, 3, dry_run=path, limits=limits, min_width_s=1e-9)
        if kind == "visa"
        else open_backend(kind, None, 2, 3, dry_run=path, limits=limits)
    )
    with be:
        with pytest.raises(LimitViolation):
            be.apply(one_pulse((2, 3), amp=2.6))
        be.apply(one_pulse((2, 3), amp=2.0))
    text = path.read_text()
    assert "2.6" not in text  # the unsafe plan never reached the stream
    if kind == "serial":
        assert "board > " in text and " PULSE 1 0 0 1 2*" in text and " DONE 1 2*" in text
        assert " SAFE*" in text.splitlines()[-2]  # the board is left SAFE
    else:
        assert 'matrix > channel.exclusiveclose("1A01,1B04")' in text
        assert ":SOUR:VOLT:TRIG 2.0;" in text and ":TRIG:ALL:COUN 2;:INIT (@1);*OPC?" in text
        # at close: abort, 0 V, output off, and only then every relay open
        off = text.index("smu > :ABOR:ALL (@1);:SOUR:VOLT 0.0;:SOUR:VOLT:TRIG 0.0;:OUTP OFF")
        assert text.rindex('matrix > channel.open("allslots")') > off
    fired = text.count(" EXEC ") if kind == "serial" else text.count(":INIT (@1)")
    assert fired == 1  # only the safe plan was delivered


def test_dry_run_to_an_unwritable_place_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write"):
        open_backend("serial", None, 2, 3, dry_run=tmp_path / "no" / "such" / "dir.txt")


# -- mrnn-hil emulate as a process ---------------------------------------------------------------
def _readlines(proc: subprocess.Popen[bytes], n: int, timeout_s: float = 20.0) -> list[str]:
    """The first `n` lines the process prints (bounded wait, unbuffered pipe reads)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    while buf.count(b"\n") < n:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        assert ready, f"the emulator printed only {buf!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"the emulator exited after printing {buf!r}"
        buf += chunk
    return [line.decode().strip() for line in buf.split(b"\n")[:n]]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def _spawn(procs: list, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "emulate", *args, "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    procs.append(proc)
    return proc


def test_emulate_serial_prints_a_port_that_works(processes: list) -> None:
    proc = _spawn(processes, "serial", "--rows", "2", "--cols", "3", "--preset", "ideal")
    (path,) = _readlines(proc, 1)
    assert os.path.realpath(path).startswith("/dev/pts/") and path != os.path.realpath(path)
    with open_backend("serial", path, 2, 3) as be:
        g0 = be.read()
        be.apply(one_pulse((2, 3)))
        g1 = be.read()
    assert g1[0, 1] > g0[0, 1]
    assert np.array_equal(np.delete(g1.ravel(), 1), np.delete(g0.ravel(), 1))


def test_emulate_scpi_serves_smu_and_matrix(processes: list) -> None:
    proc = _spawn(
        processes, "scpi", "--port", "0", "--rows", "2", "--cols", "3", "--min-width", "1e-9"
    )  # any free ports: a port picked by the test could be taken before the emulator binds it
    smu_line, matrix_line = _readlines(proc, 2)
    smu_port, matrix_port = (int(line.split("::")[2]) for line in (smu_line, matrix_line))
    assert smu_line.split() == ["SMU", f"TCPIP::127.0.0.1::{smu_port}::SOCKET"]
    assert matrix_line.split() == ["matrix", f"TCPIP::127.0.0.1::{matrix_port}::SOCKET"]
    assert 0 not in (smu_port, matrix_port) and smu_port != matrix_port
    with open_backend(
        "visa", smu_line.split()[1], 2, 3, matrix_resource=matrix_line.split()[1], min_width_s=1e-9
    ) as be:
        g0 = be.read()
        be.apply(one_pulse((2, 3)))
        g1 = be.read()
    assert g1[0, 1] > g0[0, 1]


def test_emulate_scpi_serves_a_4200a(processes: list) -> None:
    proc = _spawn(
        processes, "scpi", "--source", "4200a", "--port", "0", "--rows", "2", "--cols", "3"
    )
    source_line, matrix_line = _readlines(proc, 2)
    assert source_line.split()[0] == "4200A"
    assert source_line.split()[1].startswith("TCPIP::127.0.0.1::")
    with open_backend(
        "visa",
        source_line.split()[1],
        2,
        3,
        matrix_resource=matrix_line.split()[1],
        pulse_source="4200a-pmu",
    ) as be:
        g0 = be.read()
        be.apply(one_pulse((2, 3)))  # 100 ns: no minimum-width override on the PMU
        g1 = be.read()
    assert g1[0, 1] > g0[0, 1]


def test_emulate_refuses_bad_rates() -> None:
    from hil.cli import main

    assert main(["emulate", "serial", "--drop-rate", "0.6", "--garble-rate", "0.6"]) == 2


def test_a_presentation_costs_o_rows_round_trips_on_the_board() -> None:
    from drivers.emu_array import make_array
    from drivers.emu_board import BoardCore
    from drivers.emu_serial import SerialEmulator

    rows, cols = 6, 12
    rng = np.random.default_rng(4)
    set_counts = rng.integers(1, 9, (rows, cols))  # every device pulsed, up to 8 times
    reset_counts = rng.integers(1, 9, (rows, cols))
    plan = PulsePlan.from_groups(
        (rows, cols),
        [
            PulseGroup(PulseShape(amplitude_v=2.0, width_s=1e-8), set_counts),
            PulseGroup(PulseShape(amplitude_v=-2.0, width_s=1e-8), reset_counts),
        ],
    )
    core = BoardCore(make_array(rows, cols, preset="ideal", seed=0))
    with SerialEmulator(core) as emu, open_backend("serial", emu.path, rows, cols) as be:
        before = be.transport.round_trips
        be.apply(plan)
        apply_trips = be.transport.round_trips - before
        before = be.transport.round_trips
        be.read()
        read_trips = be.transport.round_trips - before
    # BEGIN, then per group one SHAPE and one ROW per row, then EXEC; the array in one read
    assert apply_trips == 1 + 2 * (1 + rows) + 1
    assert plan.total_pulses > 10 * apply_trips
    assert read_trips == 1
    assert core.log.entries[-1].pulses == plan.total_pulses


def test_dry_run_of_the_4200a_station(tmp_path: Path) -> None:
    """The 4200A dialect in a dry run: the stream holds the PMU's pulses and SMU1's reads,
    and ends with the outputs off before the relays open."""
    path = tmp_path / "stream.txt"
    with open_backend("visa", None, 2, 3, dry_run=path, pulse_source="4200a-pmu") as be:
        be.apply(one_pulse((2, 3), amp=2.0, width=1e-7))
        be.read(rows=[0], cols=[1])
    text = path.read_text()
    assert "4200a > :PMU:PULSE:TRAIN 1, 0.0, 2.0" in text
    assert "4200a > :PMU:PULSE:BURST:COUNT 2" in text and "4200a > :PMU:EXECUTE" in text
    assert 'matrix > channel.exclusiveclose("1C01,1B04")' in text  # reads on row C
    off = text.index("4200a > :PMU:OUTPUT:STATE 1, 0", text.index(":PMU:EXECUTE"))
    assert text.rindex('matrix > channel.open("allslots")') > off
