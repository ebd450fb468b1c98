"""Sweep cells in a process of their own: a child of the Dask worker, one per worker thread.

Why: a Dask nanny starts its workers with `MALLOC_TRIM_THRESHOLD_=65536`, which also pins
glibc's mmap threshold, so every array above 128 KiB is mapped and unmapped afresh; a cell
ran about 1.4x slower than in a plain process, and slower still two at a time
(measured in docs/sweeps.md).
A worker cannot change its own malloc settings once started, and a cluster the sweep did not
start may set anything: the cell process gets a clean environment (no malloc overrides, one
BLAS/OpenMP thread unless the worker says otherwise) and an interpreter to itself. It is
started on a thread's first cell and kept, so imports and plotting set-up are paid once per
worker, not once per cell.

The cell process takes the cell's lock itself and dies with its worker (Linux: at once, by the
kernel's parent-death signal; everywhere: within 0.5 s, by a thread that watches the parent,
which also covers the signal's tie to the thread that started the process), so the lock is
released
the moment the worker is lost and no orphaned cell goes on writing its run directory.

Wire: one JSON request per line on the cell process's stdin (`run_dir`, `config`, `lock`),
one JSON reply per line on its stdout, `{"result": ...}` or `{"error": {"kind", "message"}}`;
anything a cell prints goes to stderr.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

from hil.sweep.cell import THREAD_VARS, CellBusy, run_cell

#: glibc malloc settings a Dask nanny gives its workers (`MALLOC_TRIM_THRESHOLD_=65536`, to
#: hand memory back to the system) and a cell must not inherit: a fixed trim threshold also
#: fixes glibc's mmap threshold at 128 KiB, so every array above it is mapped and unmapped
#: afresh: a run about 1.4x slower (docs/sweeps.md, "Where a cell runs").
MALLOC_VARS = frozenset(
    {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"}
)


class CellFailed(RuntimeError):
    """The cell raised in its process; `kind` names the exception it raised there."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CellServer:
    """A child process that runs cells one after another for one worker thread.

    It is started on the thread's first cell and kept: its imports, caches and plotting
    set-up are paid once per worker, not once per cell (a cell in a fresh process took
    about 2.5 s longer than in a warm one).
    """

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARS}
        for var in THREAD_VARS:
            env.setdefault(var, "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hil.sweep.cell_process", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one cell, wait for its reply; a dead process raises `CellFailed`."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.wait()
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise CellFailed(
                "CellProcessLost", f"the cell's process {self.proc.pid} {how} without a result"
            )
        return dict(json.loads(line))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


#: This worker's cell processes, one per worker thread that has run a cell.
_SERVERS: dict[int, CellServer] = {}
_SERVERS_LOCK = threading.Lock()


def _close_servers() -> None:
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.close()


atexit.register(_close_servers)


def run_cell_in_process(run_dir: str, config: dict[str, Any], lock: str) -> dict[str, Any]:
    """`run_cell` in this thread's cell process; its result, or its exception raised here."""
    me = threading.get_ident()
    with _SERVERS_LOCK:
        server = _SERVERS.get(me)
        if server is None or server.proc.poll() is not None:
            server = _SERVERS[me] = CellServer()
    try:
        reply = server.run({"run_dir": run_dir, "config": config, "lock": lock})
    except BaseException:
        with _SERVERS_LOCK:
            _SERVERS.pop(me, None)
        with contextlib.suppress(OSError):
            server.proc.kill()
        server.proc.wait()
        raise
    if "result" in reply:
        return dict(reply["result"])
    kind, message = str(reply["error"]["kind"]), str(reply["error"]["message"])
    if kind == CellBusy.__name__:
        raise CellBusy(message)
    raise CellFailed(kind, message)


def _die_with(parent: int) -> None:
    """End this process when `parent` ends (it holds the task this process works for)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    if os.getppid() != parent:  # it ended before the signal was asked for
        os._exit(3)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> int:
    """Serve cells: one JSON request per stdin line, one JSON reply per line, until EOF."""
    _die_with(int(sys.argv[1]))
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a cell prints goes to stderr, never into the replies
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = run_cell(
                str(request["run_dir"]), dict(request["config"]), str(request["lock"])
            )
        except Exception as exc:
            traceback.print_exc()
            message = " ".join(str(exc).split()) or "(no message)"
            reply: dict[str, Any] = {"error": {"kind": type(exc).__name__, "message": message}}
        else:
            reply = {"result": result}
        replies.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
