"""One sweep cell, run on a worker: a full simulated `train` run in its own run directory.

The function is idempotent, so the engine may run a cell again after a lost worker or a
killed sweep: a finished run is only read back, a started one is resumed from its latest
checkpoint (bit-identical to an uninterrupted run on the simulator), and only a cell without
a run starts one. An exclusive lock (flock, released by the kernel when its process dies)
makes sure two processes never work on one cell at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hil.insitu.compare import is_finished, report_metrics
from hil.insitu.rundir import RunDir
from protocols.errors import InputError

#: Thread pools a cell must not grow beyond one thread (one cell per core).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class CellBusy(RuntimeError):
    """Another process holds the cell (a duplicate of a task that is still running)."""


@contextlib.contextmanager
def cell_lock(path: Path) -> Iterator[None]:
    """Hold the cell's lock file for the duration; fail at once if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise CellBusy(f"{path.stem}: already being run by process {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _same_config(rundir: RunDir, config: dict[str, Any]) -> None:
    """A cell directory must hold the run this cell asks for (not one of an edited sweep)."""
    from hil.insitu.run_config import validate_config
    from hil.insitu.training_run import resolve

    want = resolve(validate_config(config, "cell config"))[0].model_dump(mode="json")
    have = rundir.read_json("config.json")
    if json.dumps(want, sort_keys=True) != json.dumps(have, sort_keys=True):
        raise InputError(
            f"{rundir.path} holds a run with another config than its sweep cell; move it away "
            "or start the sweep in a new --out"
        )


def run_cell(run_dir: str, config: dict[str, Any], lock: str) -> dict[str, Any]:
    """Start, resume or read back the cell's run; its metrics, how it ended, and the time."""
    from hil.insitu.run_config import validate_config
    from hil.insitu.training_run import resume_run, start_run

    threads = os.environ.get("OMP_NUM_THREADS")  # as the worker process was started
    for var in THREAD_VARS:  # for children; the pools of this process were sized at start
        os.environ.setdefault(var, "1")
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    path = Path(run_dir)
    with cell_lock(Path(lock)):
        if is_finished(path):
            how = "finished before"
            report = RunDir.open(path).read_json("report.json")
        elif (path / "config.json").is_file():
            _same_config(RunDir.open(path), config)
            how = "resumed"
            report = resume_run(path).report
        else:
            how = "started"
            report = start_run(validate_config(config, "cell config"), path).report
    return {
        **report_metrics(report),
        "how": how,
        "wall_s": time.perf_counter() - t0,
        "pid": os.getpid(),
        "omp_num_threads": threads,
    }
