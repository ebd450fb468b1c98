"""Line transports: one request line out, reply lines back, over pyvisa or pyserial.

Both transports speak bytes, end every line with a terminator (LF, or NUL for a 4200A over
the LAN), and turn every failure into a `LinkError` subclass so that the backends handle
VISA and serial alike. Each call takes its own timeout so the caller can size it to the
work (a long pulse train, an array read). `clear()` empties what the instrument may still
send from before (a late reply after a timeout, a reply left by a previous session).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import stat
import time
from abc import ABC, abstractmethod
from typing import Any

import pyvisa
import serial

from drivers.errors import GarbledReply, LinkError, LinkLost, LinkTimeout

log = logging.getLogger(__name__)

try:  # POSIX: a port that goes away mid-write fails in tcdrain with termios.error, and a
    # pseudo-terminal refuses parity through termios too
    import termios

    TERMIOS_ERRORS: tuple[type[BaseException], ...] = (termios.error,)
except ImportError:  # pragma: no cover - Windows
    TERMIOS_ERRORS = ()

#: Seconds an open waits for a port that another open file holds locked to be let go.
PORT_LOCK_WAIT_S = 1.0


def port_locked(exc: BaseException) -> bool:
    """Whether an open failed because another open file holds the port's exclusive lock."""
    return getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK)


def port_holders(port: str) -> str:
    """The processes that have `port` open (from /proc), for the message of a refused open."""
    try:
        dev = os.stat(port).st_rdev
    except OSError:
        return "another open file"
    found: list[str] = []
    with contextlib.suppress(OSError):
        for pid in (e for e in os.listdir("/proc") if e.isdigit()):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == dev:
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as fh:
                            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
                    except OSError:
                        cmd = "?"
                    me = " (this process)" if int(pid) == os.getpid() else ""
                    found.append(f"process {pid}{me} ({cmd.strip()[:80]}) fd {fd}")
    return "; ".join(found) or "another open file"


def open_failure(port: str, exc: BaseException) -> LinkLost:
    """The error of an open that failed for good, naming who holds a locked port."""
    if port_locked(exc):
        return LinkLost(
            f"cannot open serial port {port!r}: it is in use by {port_holders(port)}: {exc}"
        )
    return LinkLost(f"cannot open serial port {port!r}: {exc}")


#: Longest reply line accepted; anything longer is treated as a corrupted stream.
MAX_LINE = 1 << 20


class LineTransport(ABC):
    """A bidirectional line channel with per-call timeouts and a reconnect."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.round_trips = 0
        self.lines_written = 0
        self.reconnects = 0

    @abstractmethod
    def write_line(self, line: bytes) -> None:
        """Send one line; the LF terminator is added here."""

    @abstractmethod
    def read_line(self, timeout_s: float) -> bytes:
        """The next line without its terminator; raises `LinkTimeout` after `timeout_s`."""

    @abstractmethod
    def discard_input(self) -> None:
        """Drop whatever has arrived but was not read (stale replies after a timeout)."""

    def clear(self, quiet_s: float = 0.1) -> None:
        """Empty the instrument's output: nothing sent before this call can be read after it.

        The default drops what has arrived; transports whose instrument may still be sending
        (a late reply) wait for `quiet_s` of silence or send a device clear.
        """
        self.discard_input()

    @abstractmethod
    def _reopen(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def reopen(self) -> None:
        """Close and open the link again: the cure for a desynchronised stream."""
        self.reconnects += 1
        self._reopen()

    def query(self, line: bytes, timeout_s: float) -> bytes:
        """Write `line` and return the next reply line (one bus round trip)."""
        self.write_line(line)
        self.round_trips += 1
        return self.read_line(timeout_s)


_VISA_IO_ERRORS: tuple[type[BaseException], ...] = (
    pyvisa.errors.VisaIOError,
    pyvisa.errors.InvalidSession,
    OSError,
)


class VisaTransport(LineTransport):
    """A pyvisa resource (any resource string; pyvisa-py '@py' unless told otherwise)."""

    def __init__(
        self,
        resource: str,
        *,
        visa_library: str = "@py",
        open_timeout_s: float = 5.0,
        termination: str = "\n",
    ) -> None:
        super().__init__(resource)
        if termination not in ("\n", "\0"):
            raise ValueError(f"termination {termination!r}: LF or NUL")
        self._resource_name = resource
        self._term = termination
        self._term_b = termination.encode("ascii")
        self._open_timeout_ms = max(1, round(open_timeout_s * 1000))
        try:
            self._rm = pyvisa.ResourceManager(visa_library)
        except (OSError, ValueError) as exc:
            raise LinkLost(f"VISA library {visa_library!r} cannot be loaded: {exc}") from exc
        self._res: Any = None
        self._open()

    def _open(self) -> None:
        res: Any
        try:
            res = self._rm.open_resource(self._resource_name, open_timeout=self._open_timeout_ms)
        except (pyvisa.errors.Error, OSError, ValueError) as exc:
            raise LinkLost(f"cannot open {self._resource_name}: {exc}") from exc
        # pyvisa-py SOCKET resources default to no read termination: every query would
        # time out. Both terminations are set here, always.
        res.read_termination = self._term
        res.write_termination = self._term
        self._res = res

    @property
    def is_socket(self) -> bool:
        """A raw TCP socket resource (no device-clear message exists on it)."""
        return self._resource_name.upper().rstrip(":").endswith("SOCKET")

    def write_line(self, line: bytes) -> None:
        if self._res is None:
            raise LinkLost(f"{self.name} is not open")
        try:
            self._res.write_raw(line + self._term_b)
        except _VISA_IO_ERRORS as exc:
            raise LinkLost(f"{self.name}: write failed: {exc}") from exc
        self.lines_written += 1

    def read_line(self, timeout_s: float) -> bytes:
        if self._res is None:
            raise LinkLost(f"{self.name} is not open")
        self._res.timeout = max(1, round(timeout_s * 1000))
        try:
            raw = bytes(self._res.read_raw())
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise LinkTimeout(f"{self.name}: no reply within {timeout_s:g} s") from exc
            raise LinkLost(f"{self.name}: read failed: {exc}") from exc
        except (pyvisa.errors.InvalidSession, OSError) as exc:
            raise LinkLost(f"{self.name}: read failed: {exc}") from exc
        if not raw.endswith(self._term_b):
            raise GarbledReply(f"{self.name}: reply without terminator: {raw[:60]!r}")
        return raw[:-1].rstrip(b"\r")

    def discard_input(self) -> None:
        # A SOCKET resource cannot be flushed reliably; reopening is the only sure way.
        self._reopen_quiet()

    def clear(self, quiet_s: float = 0.1) -> None:
        """GPIB, USB-TMC, VXI-11, HiSLIP: a device clear (the instrument empties its output
        queue; a reopen does not). A raw socket has no such message (and a VISA library
        may not implement one): read and drop whatever arrives until `quiet_s` passes
        without a byte."""
        if self._res is None:
            raise LinkLost(f"{self.name} is not open")
        if not self.is_socket:
            try:
                self._res.clear()
                return
            except NotImplementedError:
                pass
            except _VISA_IO_ERRORS as exc:
                raise LinkLost(f"{self.name}: device clear failed: {exc}") from exc
        self._res.timeout = max(1, round(quiet_s * 1000))
        try:
            while True:
                self._res.read_raw()
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code != pyvisa.constants.StatusCode.error_timeout:
                raise LinkLost(f"{self.name}: clear failed: {exc}") from exc
        except (pyvisa.errors.InvalidSession, OSError) as exc:
            raise LinkLost(f"{self.name}: clear failed: {exc}") from exc
        # a partial line read before the quiet period is stale too
        with contextlib.suppress(NotImplementedError, pyvisa.errors.VisaIOError):
            self._res.flush(pyvisa.constants.BufferOperation.discard_read_buffer_no_io)

    def _reopen_quiet(self) -> None:
        self.close()
        self._open()

    def _reopen(self) -> None:
        self._reopen_quiet()

    def close(self) -> None:
        if self._res is not None:
            try:
                self._res.close()
            except _VISA_IO_ERRORS as exc:  # already gone: nothing to release
                log.debug("closing %s: %s", self.name, exc)
            self._res = None


class SerialTransport(LineTransport):
    """A pyserial port or URL (a device path, a pty, `loop://`, `socket://...`, `rfc2217://`).

    Every setting is passed at open time: on a Linux pty, changing a setting of an open
    port with even parity fails, so nothing is changed afterwards. DTR and RTS are held
    inactive from the moment the port opens: an Arduino-class board resets when DTR is
    asserted, and a reset in the middle of a batch loses what it was doing. The port is
    opened for exclusive use (an advisory lock on POSIX; Windows ports are exclusive): a
    second process opening it is refused instead of reading this one's replies.
    """

    POLL_S = 0.05

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        parity: str = "N",
        open_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(port)
        self._port = port
        self._settings: dict[str, Any] = {"baudrate": baudrate, "parity": parity}
        self._open_timeout_s = open_timeout_s
        self._ser: Any = None
        self._buf = bytearray()
        self._open()

    def _open(self, *, wait: bool = False) -> None:
        """Open the port; on a reconnect (`wait`), keep trying while a USB port re-enumerates."""
        deadline = time.monotonic() + (self._open_timeout_s if wait else 0.0)
        # a lock let go a moment later (a closing opener) is waited for, briefly
        lock_deadline = max(deadline, time.monotonic() + PORT_LOCK_WAIT_S)
        # the rfc2217 client has no write timeout (it raises NotImplementedError)
        write_timeout = None if self._port.startswith("rfc2217://") else 2.0
        while True:
            try:
                ser = serial.serial_for_url(
                    self._port,
                    timeout=self.POLL_S,
                    write_timeout=write_timeout,
                    do_not_open=True,
                    # one process per port: a second opener (another mrnn-hil, a path the
                    # OS reused) would read replies meant for this one (flock on POSIX)
                    exclusive=True,
                    **self._settings,
                )
                ser.dtr = False  # applied when the port opens, before any byte moves
                ser.rts = False
                ser.open()
                self._ser = ser
                break
            except (serial.SerialException, OSError, ValueError, *TERMIOS_ERRORS) as exc:
                if time.monotonic() > (lock_deadline if port_locked(exc) else deadline):
                    raise open_failure(self._port, exc) from exc
                time.sleep(0.05)
        self._buf.clear()
        # whatever waits in the port from before this session is no reply of ours
        try:
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            log.debug("flushing %s on open: %s", self.name, exc)

    def write_line(self, line: bytes) -> None:
        if self._ser is None:
            raise LinkLost(f"{self.name} is not open")
        try:
            self._ser.write(line + b"\n")
            self._ser.flush()
        except (serial.SerialException, OSError, *TERMIOS_ERRORS) as exc:
            raise LinkLost(f"{self.name}: write failed: {exc}") from exc
        self.lines_written += 1

    def read_line(self, timeout_s: float) -> bytes:
        if self._ser is None:
            raise LinkLost(f"{self.name} is not open")
        deadline = time.monotonic() + timeout_s
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line.rstrip(b"\r")
            if len(self._buf) > MAX_LINE:
                self._buf.clear()
                raise GarbledReply(f"{self.name}: reply longer than {MAX_LINE} bytes")
            if time.monotonic() >= deadline:
                raise LinkTimeout(f"{self.name}: no complete reply within {timeout_s:g} s")
            try:
                self._buf += self._read_some(deadline - time.monotonic())
            except (serial.SerialException, OSError, ValueError) as exc:
                raise LinkLost(f"{self.name}: read failed: {exc}") from exc

    def _read_some(self, wait_s: float) -> bytes:
        """Whatever arrives within `wait_s` (at least one byte unless the wait runs out).

        A port with a file descriptor is waited on with select, so a short timeout is
        honoured exactly; URL ports (loop://, socket://) fall back to the port's own
        polling timeout.
        """
        try:
            fd = self._ser.fileno()
        except (AttributeError, OSError, ValueError, NotImplementedError):
            fd = None
        if fd is not None and fd >= 0:
            ready, _, _ = select.select([fd], [], [], max(wait_s, 0.0))
            if not ready:
                return b""
        return bytes(self._ser.read(self._ser.in_waiting or 1))

    def discard_input(self) -> None:
        self._buf.clear()
        if self._ser is None:
            return
        try:
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise LinkLost(f"{self.name}: flush failed: {exc}") from exc

    def _reopen(self) -> None:
        self.close()
        self._open(wait=True)

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except OSError as exc:
                log.debug("closing %s: %s", self.name, exc)
            self._ser = None


__all__ = [
    "MAX_LINE",
    "LineTransport",
    "LinkError",
    "SerialTransport",
    "VisaTransport",
]
