"""Kill `mrnn-hil train` with SIGKILL at random moments, resume, and get the same run.

The reference is an uninterrupted run with the same config and seed. Every interrupted run
is resumed (and sometimes killed again) until it completes; its final conductances must be
bit-identical to the reference, and its journal must hold exactly the reference's plans, in
order, each applied exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from insitu_support import cli, final_arrays, small_config


def journal_plans(run: Path) -> list[tuple[int, str, str, int]]:
    con = sqlite3.connect(run / "journal.sqlite")
    try:
        return con.execute("SELECT seq, digest, state, pulses FROM plans ORDER BY seq").fetchall()
    finally:
        con.close()


def launch(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "hil.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_sigkill_at_random_moments_then_resume_matches_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    cfg = small_config(tmp_path, training={"epochs": 8})
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    done = cli("train", "--config", str(cfg), "--out", str(ref), "--quiet")
    duration = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    expected = final_arrays(ref)
    ref_plans = journal_plans(ref)
    assert len(ref_plans) > 10 and all(state == "applied" for _, _, state, _ in ref_plans)

    rng = random.Random(20261128)
    total_kills = 0
    for trial, kills_wanted in enumerate((2, 1, 2, 1)):
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
                delay = rng.uniform(0.1, 0.85) * duration
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err.decode()
            break
        total_kills += kills
        got = final_arrays(run)
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"trial {trial}: {key}")
        plans = journal_plans(run)
        # Same plans, same order, each applied exactly once (no duplicate, none lost).
        assert [(s, d, p) for s, d, _, p in plans] == [(s, d, p) for s, d, _, p in ref_plans]
        assert all(state == "applied" for _, _, state, _ in plans)
    assert total_kills >= 3  # the runs really were interrupted
