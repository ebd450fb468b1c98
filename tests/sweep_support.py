"""Tiny sweeps and real Dask processes for the sweep tests (every process is cleaned up)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from insitu_support import PATTERNS

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
DASK = str(Path(sys.executable).with_name("dask"))


def sweep_file(
    tmp: Path, *, epochs: int = 3, seeds: tuple[int, ...] = (0, 1), **extra: Any
) -> Path:
    """Four small cells (25 units, 1250 devices): two schemes x two seeds."""
    (tmp / "glyphs.txt").write_text(PATTERNS)
    data: dict[str, Any] = {
        "base": {
            "training": {"patterns": "glyphs.txt", "epochs": epochs},
            "backend": {"preset": "epiram"},
            "programming": {"max_iterations": 6},
            "evaluation": {"samples": 20, "curve_samples": 4, "every_epochs": 2},
            "run": {"checkpoint_every": 5, "figures": False},
        },
        "grid": {"seed": list(seeds)},
        "cells": [{"scheme.kind": "proportional"}, {"scheme.kind": "manhattan"}],
        **extra,
    }
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def launch(*args: str) -> subprocess.Popen[str]:
    """A command in its own process group, so that it and its children can be killed."""
    return subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hil.cli", "sweep", *args]


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a process and everything it started (its process group), then reap it."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=30)


def finish(proc: subprocess.Popen[str], timeout: float = 240.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise
    return proc.returncode, out, err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def finals(sweep: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for cell in sorted((sweep / "cells").iterdir()):
        with np.load(cell / "final.npz", allow_pickle=False) as f:
            out[cell.name] = {k: f[k] for k in f.files}
    return out


def status(sweep: Path) -> dict[str, Any]:
    return json.loads((sweep / "status.json").read_text())["cells"]


def children(pid: int) -> set[int]:
    """Every descendant of `pid` (from /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


@contextmanager
def dask_cluster(tmp: Path, workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen[str]]]]:
    """A real `dask scheduler` and `dask worker` processes on 127.0.0.1; all killed at exit."""
    procs: list[subprocess.Popen[str]] = []
    info = tmp / "scheduler.json"
    try:
        procs.append(
            launch(DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                   "--no-dashboard", "--scheduler-file", str(info))
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, procs[0].communicate()[1]
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for i in range(workers):
            procs.append(
                launch(DASK, "worker", address, "--nthreads", "1", "--name", f"w{i}",
                       "--host", "127.0.0.1", "--no-dashboard")
            )  # fmt: skip
        if workers:
            from distributed import Client

            with Client(address, timeout="30s") as client:
                client.wait_for_workers(workers, timeout=60)
        yield address, procs
    finally:
        for proc in reversed(procs):
            kill_group(proc)
