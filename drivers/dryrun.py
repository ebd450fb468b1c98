"""The dry-run writer: the exact command stream of a run, with no instrument opened.

A `DryRunTransport` records every line the driver sends and every reply it gets, in
order, to a text file. Replies come from the emulator's firmware core (an in-process
simulated array), so the driver walks exactly the path it would walk on the bench and the
recorded stream is byte for byte what it would send: ``> `` lines are sent, ``< `` lines
are received, each prefixed with the instrument's name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from drivers.errors import LinkLost, LinkTimeout
from drivers.transport import LineTransport

Responder = Callable[[bytes], list[bytes]]


class DryRunLog:
    """One file shared by the transports of a station, written line by line."""

    def __init__(self, path: str | Path, header: str) -> None:
        self.path = Path(path)
        try:
            self._fh: TextIO | None = self.path.open("w", encoding="ascii", newline="\n")
        except OSError as exc:
            from protocols.errors import InputError

            raise InputError(f"dry run: cannot write {self.path}: {exc.strerror}") from None
        self._lock = threading.Lock()
        self._users = 0
        for line in header.splitlines():
            self._fh.write(f"# {line}\n")

    def write(self, who: str, direction: str, data: bytes) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.write(f"{who} {direction} {data.decode('ascii', 'backslashreplace')}\n")

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._fh is not None:
            self._fh.close()
            self._fh = None


class DryRunTransport(LineTransport):
    """Records the stream; answers from `responder` (an emulator core) without any I/O."""

    def __init__(self, who: str, log: DryRunLog, responder: Responder) -> None:
        super().__init__(f"dry-run:{who}")
        self.who = who
        self._log = log
        self._respond = responder
        self._pending: list[bytes] = []
        self._open = True
        log.acquire()

    def write_line(self, line: bytes) -> None:
        if not self._open:
            raise LinkLost(f"{self.name} is closed")
        self.lines_written += 1
        for part in line.split(b"\n"):
            self._log.write(self.who, ">", part)
            self._pending.extend(self._respond(part))

    def read_line(self, timeout_s: float) -> bytes:
        if not self._pending:
            raise LinkTimeout(f"{self.name}: the instrument would not answer this")
        reply = self._pending.pop(0)
        self._log.write(self.who, "<", reply)
        return reply

    def discard_input(self) -> None:
        self._pending.clear()

    def _reopen(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._log.release()
