"""SIGTERM, SIGHUP and SIGINT take one path out of every long command, and a second signal
does not cut the shutdown short.

Each command runs as a real process against a real emulator in this process: the VISA
station over loopback TCP (pyvisa-py), the pulse board over a pseudo-terminal (pyserial).
After the process has ended, the instruments are asked what a lab asks them: the SMU
`:OUTP?` and `:SOUR:VOLT?`, the matrix `print(channel.getclose("allslots"))`, the board
`STAT?`. They must say 0 V, output off, every relay open, nothing applied after the exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pyvisa
import serial
from insitu_support import small_config

from drivers import board as B
from drivers import open_backend
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_scpi import Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from drivers.errors import InstrumentError
from drivers.faults import FaultConfig
from hil.insitu.rundir import RunDir
from protocols.protocol_file import library_dir

EIGHT = "[a]\n#.#.\n#..#\n\n[b]\n.##.\n##..\n"  # 8 units: an 8 x 16 array
NINE = "[a]\n#.#\n.#.\n#.#\n\n[b]\n.#.\n###\n.#.\n"  # 9 units: a 9 x 18 array
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "hil.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(
    proc: subprocess.Popen[str], ready: Callable[[], bool], what: str, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the process ended before {what}: {err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the process did not end after the signal: {err}") from None
    return proc.returncode, err


def lab_check_station(emu: ScpiEmulator) -> tuple[str, float, str]:
    """(:OUTP?, :SOUR:VOLT?, getclose) as a lab asks them, over pyvisa-py."""
    rm = pyvisa.ResourceManager("@py")
    try:
        smu = rm.open_resource(emu.smu_resource, read_termination="\n", write_termination="\n")
        matrix = rm.open_resource(
            emu.matrix_resource, read_termination="\n", write_termination="\n"
        )
        smu.timeout = matrix.timeout = 5000
        output = smu.query(":OUTP?").strip()
        level = float(smu.query(":SOUR:VOLT?"))
        closed = matrix.query('print(channel.getclose("allslots"))').strip()
        smu.close()
        matrix.close()
    finally:
        rm.close()
    return output, level, closed


def board_stat(path: str) -> tuple[int, int, int, int]:
    """(last applied batch, staged batch, total pulses, errors) from `STAT?` over pyserial."""
    with serial.serial_for_url(path, baudrate=115200, timeout=2.0) as port:
        port.reset_input_buffer()
        port.write(B.encode("7E57", B.STAT) + b"\n")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            line = port.readline().rstrip(b"\n")
            if not line:
                continue
            tag, body = B.decode(line)
            if tag == "7E57":
                st = B.parse_status(body)  # firmware 2.0 also reports executing and SAFE
                return st.last_batch, st.staged_batch, st.pulses_total, st.errors
    raise AssertionError("the board did not answer STAT?")


def journal_status(run: Path) -> str:
    con = sqlite3.connect(f"file:{run / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        (value,) = con.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
    finally:
        con.close()
    return str(json.loads(value))


def visa_run_config(tmp_path: Path, emu: ScpiEmulator, epochs: int = 400) -> Path:
    patterns = tmp_path / "eight.txt"
    patterns.write_text(EIGHT)
    return small_config(
        tmp_path,
        training={"patterns": str(patterns), "epochs": epochs},
        backend={
            "kind": "visa",
            "preset": "ideal",
            "resource": emu.smu_resource,
            "options": {
                "matrix_resource": emu.matrix_resource,
                "min_width_s": 1e-9,
                "array": "8x16",
            },
        },
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_mid_training_leaves_the_visa_station_safe(
    tmp_path: Path, signum: signal.Signals
) -> None:
    station = Station(make_array(8, 16, preset="ideal", seed=1), min_width_s=1e-9)
    with ScpiEmulator(station) as emu:
        run = tmp_path / "run"
        proc = spawn("train", "--config", str(visa_run_config(tmp_path, emu)), "--out", str(run))
        # Mid-run: pulse trains delivered, the SMU output on.
        wait_for(proc, lambda: len(station.log) >= 30 and emu.smu.output, "pulse trains")
        proc.send_signal(signum)
        code, err = finish(proc)
        output, level, closed = lab_check_station(emu)
    assert (output, level, closed) == ("0", 0.0, "nil"), err
    assert code == EXIT[signum], err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("mrnn-hil train: "), err
    assert "Traceback" not in err
    assert journal_status(run) == "interrupted"  # never left "running"


def test_a_second_signal_does_not_cut_the_shutdown_short(tmp_path: Path) -> None:
    station = Station(make_array(8, 16, preset="ideal", seed=1), min_width_s=1e-9)
    with ScpiEmulator(station) as emu:
        run = tmp_path / "run"
        proc = spawn("train", "--config", str(visa_run_config(tmp_path, emu)), "--out", str(run))
        wait_for(proc, lambda: len(station.log) >= 30 and emu.smu.output, "pulse trains")
        # From now on every reply of the station takes 0.25 s, so the shutdown (output off,
        # relays open) lasts long enough for more signals to arrive in the middle of it.
        emu.faults.config = FaultConfig(latency_s=0.25)
        proc.send_signal(signal.SIGTERM)
        for later in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            time.sleep(0.1)
            if proc.poll() is None:
                proc.send_signal(later)
        code, err = finish(proc)
        output, level, closed = lab_check_station(emu)
    assert (output, level, closed) == ("0", 0.0, "nil"), err
    assert "still shutting down safely" in err, err  # a later signal arrived and was held off
    assert code == 143, err


def test_sigterm_mid_characterization_leaves_the_visa_station_safe(tmp_path: Path) -> None:
    station = Station(make_array(8, 16, preset="ag_asi", seed=1))
    with ScpiEmulator(station) as emu:
        out = tmp_path / "out"
        proc = spawn(
            "characterize", str(library_dir() / "ag_asi.yaml"), "--out", str(out),
            "--backend", "visa", "--resource", emu.smu_resource,
            "--matrix-resource", emu.matrix_resource, "--array", "8x16",
            "--devices", "4", "--cycles", "50", "--quiet",
        )  # fmt: skip
        wait_for(proc, lambda: len(station.log) >= 200 and emu.smu.output, "pulse trains")
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
        output, level, closed = lab_check_station(emu)
    assert (output, level, closed) == ("0", 0.0, "nil"), err
    assert code == 143, err
    assert not (out / "characterization.json").exists()  # no verdict from half an experiment


def test_sigterm_on_the_pulse_board_stops_between_batches_and_the_next_start_settles(
    tmp_path: Path,
) -> None:
    patterns = tmp_path / "nine.txt"
    patterns.write_text(NINE)
    core = BoardCore(make_array(9, 18, preset="epiram", seed=5))
    with SerialEmulator(core) as emu:
        run = tmp_path / "run"
        cfg = small_config(
            tmp_path,
            training={"patterns": str(patterns), "epochs": 3},
            backend={"kind": "serial", "port": emu.path},
        )
        proc = spawn("train", "--config", str(cfg), "--out", str(run), "--quiet")

        def past_first_checkpoint() -> bool:  # a run killed before it restarts from scratch
            return any((run / "checkpoints").glob("ckpt-*.npz")) and len(core.log.entries) >= 5

        wait_for(proc, past_first_checkpoint, "applied batches after the first checkpoint")
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
        assert code == 143, err
        assert journal_status(run) == "interrupted"
        applied = len(core.log.entries)
        last, _, total, _ = board_stat(emu.path)
        time.sleep(0.3)
        # Nothing is applied after the process ended, and the board agrees with its own log.
        assert (last, total) == (applied, sum(e.pulses for e in core.log.entries))
        assert board_stat(emu.path)[0] == last == len(core.log.entries)
        # The next start settles whatever the signal interrupted, and finishes the run.
        done = spawn("train", "--resume", str(run), "--quiet")
        code, err = finish(done, timeout=240)
        assert code == 0, err
    batches = [e.batch for e in core.log.entries]
    assert batches == list(range(1, len(batches) + 1))  # every batch exactly once
    assert journal_status(run) == "complete"


def test_sigterm_stops_the_emulator_cleanly(tmp_path: Path) -> None:
    proc = spawn("emulate", "scpi", "--port", "0")  # any free ports, printed
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("SMU"), first + (proc.communicate()[1] if not first else "")
    port = int(first.split("::")[2])
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0 and "stopped:" in err and "Traceback" not in err, err
    with socket.socket() as s:  # the listener is gone: the port can be bound again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_sigterm_mid_evaluation_writes_nothing_and_frees_the_run(tmp_path: Path) -> None:
    from hil.insitu.run_config import load_config
    from hil.insitu.training_run import resolve

    cfg, _, _ = resolve(load_config(small_config(tmp_path)))
    rundir = RunDir.create(tmp_path / "run")
    rundir.write_json("config.json", cfg.model_dump(mode="json"))
    rng = np.random.default_rng(0)
    rundir.save_npz(rundir.final_path, {"weights": rng.uniform(-0.1, 0.1, (25, 25))})
    rundir.release()
    proc = spawn("evaluate", str(rundir.path), "--samples", "40000")
    lock = rundir.path / "run.lock"

    def holds_lock() -> bool:
        try:
            return json.loads(lock.read_text())["pid"] == proc.pid
        except (OSError, ValueError, KeyError):
            return False

    wait_for(proc, holds_lock, "the evaluation to start")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 143, err
    assert not (rundir.path / "evaluation.json").exists()
    rundir.lock()  # the lock went with the process
    rundir.release()


def test_a_station_that_fails_right_after_its_setup_is_left_safe() -> None:
    # The setup message turns the SMU output on; a failure (or a signal) before the backend
    # is handed over used to close the links with the output still on.
    station = Station(make_array(2, 3, preset="ideal"), min_width_s=1e-9)
    with ScpiEmulator(station) as emu:
        listener = emu._smu
        original = listener.handle

        def error_after_setup(line: bytes) -> list[str]:
            replies = original(line)
            if b":OUTP ON" in line:
                emu.smu.errors.push((-222, "Data out of range"))
            return replies

        listener.handle = error_after_setup
        with pytest.raises(InstrumentError, match="SMU error queue"):
            open_backend(
                "visa", emu.smu_resource, 2, 3,
                matrix_resource=emu.matrix_resource, min_width_s=1e-9,
            )  # fmt: skip
        listener.handle = original
        assert lab_check_station(emu) == ("0", 0.0, "nil")
