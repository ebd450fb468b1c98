"""One process per run directory: a second one is told which process uses the run.

Two `--resume` of one run used to interleave their plans in one journal ("UNIQUE constraint
failed: plans.seq"); `evaluate` could write next to a training run. The run directory is
locked (flock) for as long as a process uses it, and the kernel drops the lock of a
process that dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from insitu_support import cli, small_config

from hil.insitu.rundir import RunDir, RunDirError


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "hil.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_checkpoint(proc: subprocess.Popen[str], run: Path) -> None:
    deadline = time.monotonic() + 120.0
    while not any((run / "checkpoints").glob("ckpt-*.npz")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the run never reached its first checkpoint"
        time.sleep(0.05)


def test_a_second_process_on_a_run_is_told_who_holds_it(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, training={"epochs": 400})
    run = tmp_path / "run"
    first = spawn("train", "--config", str(cfg), "--out", str(run), "--quiet")
    try:
        wait_for_checkpoint(first, run)
        for args in (["train", "--resume", str(run), "--quiet"], ["evaluate", str(run)]):
            done = cli(*args)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1, done.stderr
            assert "is in use by process" in lines[0], lines[0]
            assert f"process {first.pid} on host {socket.gethostname()}" in lines[0], lines[0]
            assert "started " in lines[0] and "mrnn-hil train" in lines[0], lines[0]
            assert "UNIQUE constraint" not in done.stderr
        assert not (run / "evaluation.json").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # The lock died with its process: the run can be taken over at once.
    taken = RunDir.open(run)
    taken.lock()
    taken.release()


def test_two_resumes_at_once_never_share_the_journal(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, training={"epochs": 3})
    run = tmp_path / "run"
    first = spawn("train", "--config", str(cfg), "--out", str(run), "--quiet")
    wait_for_checkpoint(first, run)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    a = spawn("train", "--resume", str(run), "--quiet")
    b = spawn("train", "--resume", str(run), "--quiet")
    results = [(p.wait(timeout=240), p.communicate()[1]) for p in (a, b)]
    codes = sorted(code for code, _ in results)
    errors = " ".join(err for _, err in results)
    assert "UNIQUE constraint" not in errors, errors
    # Either the second waited out the first's whole run (then it is already complete and
    # resumes nothing), or it was refused while the first held the run.
    assert codes[0] == 0, errors
    assert codes[1] in (0, 2), errors
    if codes[1] == 2:
        assert "is in use by process" in errors, errors


def _probe(path: Path) -> str:
    """What another process says when it tries to lock the run at `path`."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from hil.insitu.rundir import RunDir\n"
            "try:\n    RunDir.open(sys.argv[1]).lock()\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path: Path) -> None:
    rd = RunDir.create(tmp_path / "run")
    rd.write_json("config.json", {"seed": 0})
    again = RunDir.open(rd.path)
    again.lock()  # the same process: no conflict
    again.release()
    said = _probe(rd.path)
    assert said.startswith("RunInUse") and f"process {os.getpid()}" in said, said
    rd.release()
    assert _probe(rd.path) == ""  # released: another process may take it
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir.create(rd.path)


_LATE_HOLDER = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
note = {"pid": os.getpid(), "host": socket.gethostname(), "started": "now", "command": "late"}
os.pwrite(fd, json.dumps(note).encode().ljust(1024, b" "), 0)
print("noted", flush=True)
time.sleep(30)
"""


def test_a_refused_process_names_the_new_holder_not_the_dead_one(tmp_path: Path) -> None:
    """A process refused in the moment between a holder's lock and its note names the holder.

    The lock file still carries the note of the process that held the run before and died
    (a SIGKILLed run); the new holder writes its own note just after it takes the lock. A
    process refused in between used to name the dead process, or "another process".
    """
    rd = RunDir.create(tmp_path / "run")
    rd.write_json("config.json", {"seed": 0})
    rd.release()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    note = {"pid": dead_pid, "host": socket.gethostname(), "started": "then", "command": "dead"}
    (rd.path / "run.lock").write_bytes(json.dumps(note).encode())
    holder = subprocess.Popen(
        [sys.executable, "-c", _LATE_HOLDER, str(rd.path / "run.lock"), "0.6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        said = _probe(rd.path)
        assert said.startswith("RunInUse"), said
        assert f"process {holder.pid} on host" in said, said
        assert f"process {dead_pid} " not in said, said
    finally:
        holder.kill()
        holder.wait(timeout=30)
