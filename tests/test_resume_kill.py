"""Kill `mrnn-hil train` with SIGKILL at random moments, resume, and get the same run.

The reference is an uninterrupted run with the same config and seed. Every interrupted run
is resumed (and sometimes killed again) until it completes; its final conductances must be
bit-identical to the reference, and its journal must hold exactly the reference's plans, in
order, each applied exactly once.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from insitu_support import cli, final_arrays, small_config


def journal_plans(run: Path) -> list[tuple[int, str, str, int]]:
    con = sqlite3.connect(run / "journal.sqlite")
    try:
        return con.execute("SELECT seq, digest, state, pulses FROM plans ORDER BY seq").fetchall()
    finally:
        con.close()


def plans_so_far(run: Path) -> int:
    """Plans journaled by a run still in progress (0 before its journal exists)."""
    if not (run / "journal.sqlite").exists():
        return 0
    try:
        return len(journal_plans(run))
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def launch(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "hil.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


@dataclass(frozen=True)
class Reference:
    config: Path
    run: Path
    duration: float
    final: dict[str, np.ndarray]
    plans: list[tuple[int, str, str, int]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One uninterrupted run: what every interrupted run must end up as."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = small_config(tmp, training={"epochs": 8})
    run = tmp / "ref"
    t0 = time.monotonic()
    done = cli("train", "--config", str(cfg), "--out", str(run), "--quiet")
    duration = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    plans = journal_plans(run)
    assert len(plans) > 10 and all(state == "applied" for _, _, state, _ in plans)
    return Reference(cfg, run, duration, final_arrays(run), plans)


def assert_same_run(run: Path, ref: Reference, label: str) -> None:
    got = final_arrays(run)
    assert sorted(got) == sorted(ref.final)
    for key, value in ref.final.items():
        np.testing.assert_array_equal(got[key], value, err_msg=f"{label}: {key}")
    plans = journal_plans(run)
    # Same plans, same order, each applied exactly once (no duplicate, none lost).
    assert [(s, d, p) for s, d, _, p in plans] == [(s, d, p) for s, d, _, p in ref.plans]
    assert all(state == "applied" for _, _, state, _ in plans)


def test_sigkill_at_random_moments_then_resume_matches_the_uninterrupted_run(
    tmp_path: Path, reference: Reference
) -> None:
    cfg, total = reference.config, len(reference.plans)
    rng = random.Random(20261128)
    total_kills = 0
    for trial, kills_wanted in enumerate((2, 1)):
        run = tmp_path / f"killed-{trial}"
        kills = 0
        while True:
            fresh = not (run / "config.json").exists()
            args = (
                ["train", "--config", str(cfg), "--out", str(run), "--quiet"]
                if fresh
                else ["train", "--resume", str(run), "--quiet"]
            )
            proc = launch(args)
            if kills < kills_wanted:
                # A random moment: once a random number of plans is journaled (0: during
                # start-up), plus a random fraction of a presentation.
                target = rng.randint(plans_so_far(run), total)
                deadline = time.monotonic() + 120
                while proc.poll() is None and time.monotonic() < deadline:
                    if plans_so_far(run) >= target:
                        break
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.03))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err.decode()
            break
        total_kills += kills
        assert_same_run(run, reference, f"trial {trial}")
    assert total_kills >= 2  # the runs really were interrupted


def test_full_disk_is_a_clear_error_and_the_run_resumes_to_the_same_state(
    tmp_path: Path, reference: Reference
) -> None:
    run = tmp_path / "small-disk"
    limit = 150_000  # bytes per file: a checkpoint fits, the journal's log soon does not

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = cli(
        "train",
        "--config",
        str(reference.config),
        "--out",
        str(run),
        "--quiet",
        preexec_fn=small_disk,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert str(run) in done.stderr and "--resume" in done.stderr
    # Nothing half-applied: every journaled plan but possibly the last is marked applied.
    plans = journal_plans(run)
    assert 0 < len(plans) < len(reference.plans)
    assert all(state == "applied" for _, _, state, _ in plans[:-1])
    resumed = cli("train", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, reference, "after a full disk")


def test_resume_on_an_instrument_without_snapshot_never_resends_a_plan(tmp_path: Path) -> None:
    from drivers.emu_array import make_array
    from drivers.emu_board import BoardCore
    from drivers.emu_serial import SerialEmulator

    cfg = small_config(tmp_path, training={"epochs": 5})
    core = BoardCore(make_array(25, 50, preset="epiram", seed=3))
    run = tmp_path / "board"
    kill_after = random.Random(7).randint(8, 20)  # plans journaled before the kill
    with SerialEmulator(core) as emu:
        proc = launch(
            ["train", "--config", str(cfg), "--backend", "serial", "--port", emu.path,
             "--out", str(run), "--quiet"]
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if plans_so_far(run) >= kill_after:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = len(journal_plans(run))
        resumed = cli("train", "--resume", str(run), "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        on_board = core.array.read()
    assert killed_at > 0
    plans = journal_plans(run)
    states = [state for _, _, state, _ in plans]
    assert "intent" not in states and states.count("unknown") <= 1
    assert [seq for seq, _, _, _ in plans] == list(range(len(plans)))
    applied = sum(p for _, _, state, p in plans if state == "applied")
    unknown = sum(p for _, _, state, p in plans if state == "unknown")
    delivered = sum(b.pulses for b in core.log.entries)
    # Every pulse the board received is journaled; none was sent twice.
    assert applied <= delivered <= applied + unknown
    np.testing.assert_array_equal(final_arrays(run)["conductance_s"], on_board)
    con = sqlite3.connect(run / "journal.sqlite")
    notes = [m for (m,) in con.execute("SELECT message FROM events WHERE kind = 'resume'")]
    con.close()
    assert len(notes) == 1
