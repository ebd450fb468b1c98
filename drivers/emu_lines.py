"""What every emulator server does with the bytes it receives, written once.

`LineBuffer` splits a byte stream into lines the way an instrument's input parser does: LF
(or the instrument's terminator, NUL for a 4200A on the LAN) ends a line, a CR before it is
dropped, and a line longer than the parser's buffer is
discarded whole and handed on as one over-long marker line (so the instrument can answer
it with its overrun error) instead of being split into fragments that might parse.
`socket_chunks` yields what a TCP connection receives until it closes or the server stops.
`Served` gives an emulator server its `with` block (start on entry, stop on exit).
`pty_link` gives a pseudo-terminal a path of its own, which `unlink_pty` removes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import Self

#: Name prefix of the private directories that hold pty links.
PTY_DIR_PREFIX = "mrnn-hil-pty-"


def pty_link(slave: int) -> str:
    """A path of its own to the pseudo-terminal whose slave end is `slave`.

    The kernel gives a freed `/dev/pts/N` to the next pty opened, so a driver that goes on
    reopening the `/dev/pts` path of an emulator that has stopped (a reconnect loop) may open
    and lock another emulator's port. The path returned is a symlink in a fresh private
    directory, and `unlink_pty` removes it when the emulator stops (before the descriptor it
    leads through is closed), as a `/dev/serial/by-id/...` path disappears when its USB
    board is unplugged.
    """
    where = tempfile.mkdtemp(prefix=PTY_DIR_PREFIX)
    path = os.path.join(where, "port")
    # Through this process's descriptor where there is /proc: the link then dies with the
    # process even when it is killed and cannot remove it (SIGKILL), instead of pointing at
    # a /dev/pts name the kernel hands to the next pty.
    own = f"/proc/{os.getpid()}/fd/{slave}"
    os.symlink(own if os.path.exists(own) else os.ttyname(slave), path)
    return path


def unlink_pty(path: str) -> None:
    """Remove a link made by `pty_link` (nothing else), so no one opens the pty by it again."""
    where = os.path.dirname(path)
    if not os.path.basename(where).startswith(PTY_DIR_PREFIX) or not os.path.islink(path):
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
        os.rmdir(where)


class Served(ABC):
    """An emulator server used as a context manager: served inside the `with` block."""

    @abstractmethod
    def start(self) -> Self:
        """Serve (once; starting a running server does nothing)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release the port."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LineBuffer:
    """Accumulates received bytes and returns complete lines (without terminators)."""

    def __init__(self, max_line: int, terminator: bytes = b"\n") -> None:
        self.max_line = max_line
        self.terminator = terminator
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by `data` (an over-long one as `max_line + 1` bytes of '?')."""
        self._buf += data
        lines: list[bytes] = []
        while True:
            nl = self._buf.find(self.terminator)
            if nl < 0:
                if len(self._buf) > self.max_line:
                    self._overflow = True
                    self._buf.clear()
                return lines
            line = bytes(self._buf[:nl]).rstrip(b"\r")
            del self._buf[: nl + 1]
            if self._overflow:
                self._overflow = False
                line = b"?" * (self.max_line + 1)
            lines.append(line)

    def clear(self) -> None:
        """Drop pending input (a link reset)."""
        self._buf.clear()
        self._overflow = False


def socket_chunks(conn: socket.socket, stop: threading.Event) -> Iterator[bytes]:
    """Received data of `conn` until the peer closes, the socket fails, or `stop` is set.

    The socket must have a timeout, so that `stop` is polled.
    """
    while not stop.is_set():
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return
        if not chunk:
            return
        yield chunk
