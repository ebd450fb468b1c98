"""Small ways a command went wrong, each now a one-line answer that says what is true.

A dry run silently overwrote a file and ended in a traceback on /dev/full; `--dry-run` on the
simulator spoke of an unknown device setting; a 10 MB preset name was echoed in full; a
damaged checkpoint was reported as "no checkpoint yet"; a random final.npz was answered with
advice to unpickle it; a complex .npy lost its imaginary part; `mrnn-hil train | head -1`
ended in BrokenPipeError.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from insitu_support import cli, small_config

from hil.insitu.rundir import RunDir
from protocols.protocol_file import library_dir

PATTERNS = "[a]\n#.#\n.#.\n#.#\n\n[b]\n.#.\n###\n.#.\n"


def one_line(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines[0]) < 400, lines[0][:400]
    return lines[0]


def dry_train(tmp_path: Path, stream: str, *extra: str) -> subprocess.CompletedProcess[str]:
    patterns = tmp_path / "nine.txt"
    patterns.write_text(PATTERNS)
    return cli(
        "train",
        "--backend",
        "serial",
        "--port",
        "/dev/ttyUSB-not-there",
        "--dry-run",
        stream,
        "--patterns",
        str(patterns),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        *extra,
    )


def test_a_dry_run_never_overwrites_a_file(tmp_path: Path) -> None:
    stream = tmp_path / "stream.txt"
    stream.write_text("last week's stream\n")
    line = one_line(dry_train(tmp_path, str(stream)))
    assert "already exists" in line and str(stream) in line
    assert stream.read_text() == "last week's stream\n"
    assert not (tmp_path / "run").exists()


def test_a_dry_run_to_dev_full_is_one_line(tmp_path: Path) -> None:
    assert "already exists" in one_line(dry_train(tmp_path, "/dev/full"))


def test_a_dry_run_that_cannot_be_written_midway_is_one_line(tmp_path: Path) -> None:
    def small_files() -> None:  # writes past 32 kB fail (EFBIG) instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, 32 << 10))

    stream = tmp_path / "stream.txt"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hil.cli",
            "characterize",
            str(library_dir() / "ag_asi.yaml"),
            "--out",
            str(tmp_path / "out"),
            "--backend",
            "serial",
            "--port",
            "/dev/null-board",
            "--dry-run",
            str(stream),
            "--devices",
            "4",
            "--cycles",
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files,
    )
    line = one_line(done)
    assert f"cannot write {stream}" in line and "incomplete" in line, line
    assert not (tmp_path / "out" / "characterization.json").exists()


def test_dry_run_on_the_simulator_says_what_a_dry_run_is(tmp_path: Path) -> None:
    for args in (
        ["train", "--dry-run", str(tmp_path / "s.txt"), "--out", str(tmp_path / "run")],
        [
            "characterize",
            str(library_dir() / "ideal.yaml"),
            "--out",
            str(tmp_path / "c"),
            "--dry-run",
            str(tmp_path / "s.txt"),
        ],
    ):
        line = one_line(cli(*args))
        assert "instrument's command stream" in line and "--backend visa or serial" in line
        assert "unknown device setting" not in line
    assert not (tmp_path / "s.txt").exists() and not (tmp_path / "run").exists()


def test_a_huge_preset_name_is_not_echoed_in_full(tmp_path: Path) -> None:
    name = "x" * 100_000  # about the longest argument Linux passes
    for args in (
        ["train", "--preset", name, "--out", str(tmp_path / "run")],
        [
            "characterize",
            str(library_dir() / "ideal.yaml"),
            "--out",
            str(tmp_path / "c"),
            "--preset",
            name,
        ],
        ["devices", name],
    ):
        line = one_line(cli(*args))
        assert "unknown device preset 'xxx" in line and "..." in line


def killed_run(tmp_path: Path) -> Path:
    """A sim run killed after its first checkpoint (no final.npz)."""
    cfg = small_config(tmp_path, training={"epochs": 400})
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "train", "--config", str(cfg), "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 120
    while len(list((run / "checkpoints").glob("ckpt-*.npz"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    return run


def test_damaged_checkpoints_are_reported_as_damaged(tmp_path: Path) -> None:
    run = killed_run(tmp_path)
    for ckpt in (run / "checkpoints").glob("ckpt-*.npz"):
        ckpt.write_bytes(ckpt.read_bytes()[:300])  # truncated: a disk that lied
    for args in (["train", "--resume", str(run), "--quiet"], ["evaluate", str(run)]):
        line = one_line(cli(*args))
        assert "damaged" in line and "no checkpoint" not in line, line
    assert not (run / "evaluation.json").exists()


def test_a_random_final_npz_is_not_answered_with_advice_to_unpickle(tmp_path: Path) -> None:
    from hil.insitu.run_config import load_config
    from hil.insitu.training_run import resolve

    cfg, _, _ = resolve(load_config(small_config(tmp_path)))
    rundir = RunDir.create(tmp_path / "run")
    rundir.write_json("config.json", cfg.model_dump(mode="json"))
    rundir.final_path.write_bytes(np.random.default_rng(1).bytes(4096))
    rundir.release()
    line = one_line(cli("evaluate", str(rundir.path)))
    assert "not an .npz archive" in line and "pickle" not in line.lower(), line
    rundir.final_path.write_bytes(b"\x80\x04\x95" + bytes(64))  # a pickle's first bytes
    line = one_line(cli("evaluate", str(rundir.path)))
    assert "not an .npz archive" in line and "pickle" not in line.lower(), line
    np.savez(rundir.final_path, weights=np.ones((25, 25)) * (1 + 1j))
    assert "not real numbers" in one_line(cli("evaluate", str(rundir.path)))


def test_a_complex_npy_pattern_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "complex.npy"
    np.save(path, np.array([[1, -1, 1, -1], [-1, 1, -1, 1]], dtype=complex) * 1j)
    line = one_line(cli("train", "--patterns", str(path), "--out", str(tmp_path / "run")))
    assert "complex" in line
    assert not (tmp_path / "run").exists()


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, training={"epochs": 1}, evaluation={"samples": 2})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hil.cli",
            "train",
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -1` that has already read its line
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert code == 141, err
    assert "BrokenPipeError" not in err and "Traceback" not in err and not err.strip(), err
    assert (tmp_path / "run" / "report.md").exists()  # the run itself completed
