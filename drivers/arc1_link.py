"""The byte link to an ArC ONE: pyserial, or a dry run that answers from the emulator's core.

The ArC ONE protocol is not line-symmetric (ASCII lines out, raw float32 back), so this link
speaks bytes: `write` sends a whole command, `read_exact` waits for a fixed number of reply
bytes, `read_line` for the init confirmation. Every failure becomes a `LinkError` subclass.
Every port setting (921600 baud, even parity, one stop bit, 8 data bits, no flow control) is
given when the port opens: on a Linux pty a setting changed on an open port with even parity
fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import serial

from drivers import arc1 as A
from drivers.errors import LinkLost, LinkTimeout
from drivers.transport import PORT_LOCK_WAIT_S, TERMIOS_ERRORS, open_failure, port_locked

log = logging.getLogger(__name__)


class Arc1Link(ABC):
    """Bytes to and from the board, with per-call timeouts and a reconnect."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.commands = 0
        self.round_trips = 0
        self.bytes_out = 0
        self.bytes_in = 0
        self.reconnects = 0

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send one command (its lines, LF-terminated)."""

    @abstractmethod
    def read_exact(self, n: int, timeout_s: float, what: str) -> bytes:
        """Exactly `n` reply bytes; `LinkTimeout` naming `what` when they do not all arrive."""

    @abstractmethod
    def read_line(self, timeout_s: float, what: str) -> bytes:
        """One reply line without its terminator."""

    @abstractmethod
    def discard_input(self, quiet_s: float = 0.0) -> None:
        """Drop what has arrived, and what keeps arriving until the line is quiet `quiet_s`."""

    @abstractmethod
    def _reopen(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def reopen(self) -> None:
        self.reconnects += 1
        self._reopen()


class SerialArc1Link(Arc1Link):
    """The board on a serial port or a pyserial URL (`/dev/ttyACM0`, `COM5`, `socket://...`)."""

    POLL_S = 0.05

    def __init__(self, port: str, *, baudrate: int = A.BAUDRATE, open_timeout_s: float = 5.0):
        super().__init__(port)
        self._port = port
        self._settings: dict[str, Any] = {
            "baudrate": baudrate,
            "parity": A.PARITY,
            "stopbits": A.STOPBITS,
            "bytesize": A.BYTESIZE,
            "xonxoff": False,
            "rtscts": False,
            "dsrdtr": False,
        }
        self._open_timeout_s = open_timeout_s
        self._ser: Any = None
        self._buf = bytearray()
        self._open()

    def _open(self, *, wait: bool = False) -> None:
        deadline = time.monotonic() + (self._open_timeout_s if wait else 0.0)
        # a lock let go a moment later (a closing opener) is waited for, briefly
        lock_deadline = max(deadline, time.monotonic() + PORT_LOCK_WAIT_S)
        while True:
            try:
                self._ser = serial.serial_for_url(
                    self._port,
                    timeout=self.POLL_S,
                    write_timeout=2.0,
                    # one process per port (flock on POSIX): a second opener, or a pty path
                    # the OS handed to another board, would read replies meant for this one
                    exclusive=True,
                    **self._settings,
                )
                break
            except TERMIOS_ERRORS as exc:
                # A Linux pty has no parity: it drops PARENB on the first open and refuses
                # (EINVAL) an open that would change nothing else; on a pty, open without.
                if not _is_pty(self._port) or self._settings["parity"] == "N":
                    raise LinkLost(f"cannot open serial port {self._port!r}: {exc}") from exc
                log.debug("%s is a pseudo-terminal: opened without parity", self._port)
                self._settings["parity"] = "N"
            except (serial.SerialException, OSError, ValueError) as exc:
                if time.monotonic() > (lock_deadline if port_locked(exc) else deadline):
                    raise open_failure(self._port, exc) from exc
                time.sleep(0.05)
        self._buf.clear()
        try:
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            log.debug("flushing %s on open: %s", self.name, exc)

    def write(self, data: bytes) -> None:
        if self._ser is None:
            raise LinkLost(f"{self.name} is not open")
        try:
            self._ser.write(data)
            self._ser.flush()
        except (serial.SerialException, OSError, *TERMIOS_ERRORS) as exc:
            raise LinkLost(f"{self.name}: write of {A.describe(data)} failed: {exc}") from exc
        self.commands += 1
        self.bytes_out += len(data)

    def _read_some(self, wait_s: float) -> bytes:
        try:
            fd = self._ser.fileno()
        except (AttributeError, OSError, ValueError, NotImplementedError):
            fd = None
        if fd is not None and fd >= 0:
            ready, _, _ = select.select([fd], [], [], max(wait_s, 0.0))
            if not ready:
                return b""
        return bytes(self._ser.read(self._ser.in_waiting or 1))

    def _fill(self, until: Callable[[], bool], timeout_s: float, what: str, want: str) -> None:
        if self._ser is None:
            raise LinkLost(f"{self.name} is not open")
        deadline = time.monotonic() + timeout_s
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                got = len(self._buf)
                self._buf.clear()
                raise LinkTimeout(
                    f"{self.name}: no complete reply to {what} within {timeout_s:g} s "
                    f"(expected {want}, got {got} bytes)"
                )
            try:
                chunk = self._read_some(left)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise LinkLost(f"{self.name}: read after {what} failed: {exc}") from exc
            self._buf += chunk
            self.bytes_in += len(chunk)

    def read_exact(self, n: int, timeout_s: float, what: str) -> bytes:
        self._fill(lambda: len(self._buf) >= n, timeout_s, what, f"{n} bytes")
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.round_trips += 1
        return out

    def read_line(self, timeout_s: float, what: str) -> bytes:
        self._fill(lambda: b"\n" in self._buf, timeout_s, what, "a line")
        nl = self._buf.index(b"\n")
        line = bytes(self._buf[:nl]).rstrip(b"\r")
        del self._buf[: nl + 1]
        self.round_trips += 1
        return line

    def discard_input(self, quiet_s: float = 0.0) -> None:
        self._buf.clear()
        if self._ser is None:
            return
        try:
            end = time.monotonic() + quiet_s
            while quiet_s > 0:
                chunk = self._read_some(min(quiet_s, max(end - time.monotonic(), 0.0)))
                if chunk:
                    end = time.monotonic() + quiet_s
                elif time.monotonic() >= end:
                    break
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkLost(f"{self.name}: flush failed: {exc}") from exc

    def _reopen(self) -> None:
        self.close()
        self._open(wait=True)

    def close(self) -> None:
        if self._ser is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                self._ser.close()
            self._ser = None


def _is_pty(port: str) -> bool:
    return os.path.realpath(port).startswith("/dev/pts/")


Responder = Callable[[bytes], bytes]


class DryRunArc1Link(Arc1Link):
    """Writes the exact command stream to a dry-run log; replies come from an emulated core.

    Each line sent is logged as ``arc1 > <line>``; float32 replies as ``arc1 < f32[n] ...``
    (every value with nine significant digits, which a float32 round-trips), the init
    confirmation as ``arc1 < 1``, the version reply as ``arc1 < u16[2] major minor``.
    """

    def __init__(self, log_: Any, responder: Responder, who: str = "arc1") -> None:
        super().__init__(f"dry-run:{who}")
        self.who = who
        self._log = log_
        self._respond = responder
        self._pending = bytearray()
        self._open = True
        log_.acquire()

    def write(self, data: bytes) -> None:
        if not self._open:
            raise LinkLost(f"{self.name} is closed")
        for part in data.split(b"\n")[:-1]:
            self._log.write(self.who, ">", part)
        self._pending += self._respond(data)
        self.commands += 1
        self.bytes_out += len(data)

    def read_exact(self, n: int, timeout_s: float, what: str) -> bytes:
        if len(self._pending) < n:
            raise LinkTimeout(f"{self.name}: the board would not answer {what}")
        out = bytes(self._pending[:n])
        del self._pending[:n]
        self.round_trips += 1
        self.bytes_in += n
        if n == A.VERSION_BYTES and what.startswith("`999`"):
            major, minor = A.decode_version(out)
            text = f"u16[2] {major} {minor}"
        else:
            values = np.frombuffer(out, dtype="<f4")
            text = f"f32[{values.size}] " + " ".join(f"{v:.9g}" for v in values)
        self._log.write(self.who, "<", text.encode("ascii"))
        return out

    def read_line(self, timeout_s: float, what: str) -> bytes:
        nl = self._pending.find(b"\n")
        if nl < 0:
            raise LinkTimeout(f"{self.name}: the board would not answer {what}")
        line = bytes(self._pending[:nl])
        del self._pending[: nl + 1]
        self.round_trips += 1
        self.bytes_in += nl + 1
        self._log.write(self.who, "<", line)
        return line

    def discard_input(self, quiet_s: float = 0.0) -> None:
        self._pending.clear()

    def _reopen(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._log.release()
