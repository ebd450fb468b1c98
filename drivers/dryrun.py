"""The dry-run writer: the exact command stream of a run, with no instrument opened.

A `DryRunTransport` records every line the driver sends and every reply it gets, in
order, to a text file. Replies come from the emulator's firmware core (an in-process
simulated array), so the driver walks exactly the path it would walk on the bench and the
recorded stream is byte for byte what it would send: ``> `` lines are sent, ``< `` lines
are received, each prefixed with the instrument's name.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from drivers.errors import LinkLost, LinkTimeout
from drivers.transport import LineTransport
from protocols.errors import InputError
from protocols.loading import open_new_file

Responder = Callable[[bytes], list[bytes]]


class DryRunError(InputError):
    """The dry-run file cannot be created or written (exists, disk full, ...)."""


class DryRunLog:
    """One file shared by the transports of a station, written line by line.

    The file is created here and never overwritten: an existing path (a previous stream, a
    FIFO, /dev/full) is refused before anything runs. A write that fails (disk full, file
    size limit) is a `DryRunError` naming the file, not a traceback.
    """

    def __init__(self, path: str | Path, header: str) -> None:
        self.path = Path(path)
        fd = open_new_file(self.path, "dry run")
        try:
            self._fh: TextIO | None = os.fdopen(fd, "w", encoding="ascii", newline="\n")
        except OSError as exc:
            os.close(fd)
            raise DryRunError(f"dry run: cannot write {self.path}: {exc.strerror}") from None
        self._lock = threading.Lock()
        self._users = 0
        with self._lock:
            self._put("".join(f"# {line}\n" for line in header.splitlines()))

    def _put(self, text: str) -> None:
        """Write (lock held); a failure closes the file and raises `DryRunError`."""
        if self._fh is None:
            return
        try:
            self._fh.write(text)
        except OSError as exc:
            self._abandon()
            raise DryRunError(
                f"dry run: cannot write {self.path}: {exc.strerror or exc}; the stream in it "
                "is incomplete"
            ) from None

    def _abandon(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()

    def write(self, who: str, direction: str, data: bytes) -> None:
        with self._lock:
            self._put(f"{who} {direction} {data.decode('ascii', 'backslashreplace')}\n")

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError as exc:
                raise DryRunError(
                    f"dry run: cannot write {self.path}: {exc.strerror or exc}; the stream in "
                    "it is incomplete"
                ) from None


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
