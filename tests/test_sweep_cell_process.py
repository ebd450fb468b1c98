"""A sweep cell's own process: a clean environment, errors that keep their kind, one warm
process per worker thread, and a lost process reported as such and replaced.

Each test runs real cell processes (`python -m hil.sweep.cell_process`) on tiny runs.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from insitu_support import PATTERNS

from hil.sweep import cell_process
from hil.sweep.cell import CellBusy
from hil.sweep.cell_process import CellFailed, CellServer, run_cell_in_process


def tiny_config(tmp: Path, epochs: int = 1) -> dict[str, Any]:
    (tmp / "glyphs.txt").write_text(PATTERNS)
    return {
        "training": {"patterns": str(tmp / "glyphs.txt"), "epochs": epochs},
        "backend": {"preset": "epiram"},
        "programming": {"max_iterations": 4},
        "evaluation": {"samples": 10, "curve_samples": 2, "every_epochs": 1},
        "run": {"figures": False},
    }


@pytest.fixture(autouse=True)
def _own_servers() -> Iterator[None]:
    """Each test starts and ends without cell processes of this (pytest) process."""
    cell_process._close_servers()
    yield
    cell_process._close_servers()


def environ_of(pid: int) -> dict[str, str]:
    """A started process's environment (once it runs its own program, not its parent's)."""
    deadline = time.monotonic() + 30
    while b"hil.sweep.cell_process" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the cell process never started"
        time.sleep(0.01)
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_the_cell_process_drops_the_malloc_settings_a_dask_nanny_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as a Dask nanny starts workers
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")  # a worker's own choice is kept
    server = CellServer()
    try:
        env = environ_of(server.proc.pid)
    finally:
        server.close()
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    assert env["OMP_NUM_THREADS"] == "1" and env["OPENBLAS_NUM_THREADS"] == "3"


def test_cells_share_one_warm_process_per_thread_and_errors_keep_their_kind(
    tmp_path: Path,
) -> None:
    config = tiny_config(tmp_path)
    first = run_cell_in_process(str(tmp_path / "a"), config, str(tmp_path / "a.lock"))
    again = run_cell_in_process(str(tmp_path / "a"), config, str(tmp_path / "a.lock"))
    assert first["how"] == "started" and again["how"] == "finished before"
    assert first["pid"] == again["pid"] != os.getpid()  # one process, kept between cells
    assert first["omp_num_threads"] == "1"
    (tmp_path / "b").write_text("not a directory")
    with pytest.raises(CellFailed) as failed:
        run_cell_in_process(str(tmp_path / "b"), config, str(tmp_path / "b.lock"))
    assert failed.value.kind != "CellProcessLost" and str(tmp_path / "b") in str(failed.value)
    # another thread gets a process of its own
    other: list[dict[str, Any]] = []
    t = threading.Thread(
        target=lambda: other.append(
            run_cell_in_process(str(tmp_path / "c"), config, str(tmp_path / "c.lock"))
        )
    )
    t.start()
    t.join(timeout=240)
    assert other and other[0]["how"] == "started" and other[0]["pid"] != first["pid"]


def test_a_cell_held_elsewhere_is_busy_not_failed(tmp_path: Path) -> None:
    lock = tmp_path / "a.lock"
    held = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        os.write(held, b"4242\n")
        with pytest.raises(CellBusy, match="already being run by process 4242"):
            run_cell_in_process(str(tmp_path / "a"), tiny_config(tmp_path), str(lock))
    finally:
        os.close(held)
    assert not (tmp_path / "a").exists()


def test_a_killed_cell_process_is_reported_lost_and_replaced(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, epochs=400)
    lock = tmp_path / "a.lock"
    outcome: list[BaseException | dict[str, Any]] = []

    def run() -> None:
        try:
            outcome.append(run_cell_in_process(str(tmp_path / "a"), config, str(lock)))
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    pid = ""
    while not pid and time.monotonic() < deadline:
        pid = lock.read_text().strip() if lock.exists() else ""
        time.sleep(0.02)
    assert pid, "the cell never started"
    os.kill(int(pid), signal.SIGKILL)
    t.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], CellFailed), outcome
    assert outcome[0].kind == "CellProcessLost"
    assert f"process {pid} was killed by signal {int(signal.SIGKILL)}" in str(outcome[0])
    # the thread's next cell gets a new process; the killed cell's run resumes there
    config["training"]["epochs"] = 1
    small = run_cell_in_process(str(tmp_path / "b"), config, str(tmp_path / "b.lock"))
    assert small["how"] == "started" and small["pid"] != int(pid)
