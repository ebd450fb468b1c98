"""The pulse board emulator on a pseudo-terminal or an RFC 2217 port, with fault injection.

On a pty the emulator keeps its own handle on the terminal side so that the driver can
close and reopen the port (a reconnect) without the emulator seeing a hang-up. A pty has
no modem lines, so the board's reaction to DTR is served over RFC 2217 (serial over
telnet, `rfc2217://127.0.0.1:<port>`, pyserial's own client and server-side protocol),
where the host's DTR and RTS reach the emulator: `BoardLine` makes the board reset when
DTR is asserted (an Arduino-class board's auto-reset) or whenever the port is opened.

A "disconnect" fault is a link reset of the board: the current frame is dropped (before
or after it is executed), the staging buffer is lost and the board ignores input for a
moment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serial import rfc2217

from drivers.board import MAX_FRAME
from drivers.emu_board import BoardCore
from drivers.emu_lines import LineBuffer, Served, pty_link, unlink_pty
from drivers.faults import Fault, FaultConfig, FaultInjector

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
POLL_S = 0.005


@dataclass
class BoardLine:
    """The board's side of the cable.

    `resets_on_dtr`: asserting DTR resets the board (a capacitor from DTR to RESET).
    `reset_on_open`: every open of the port resets it, whatever DTR the host asks for (the
    operating system raises DTR when a serial port is opened). `boot_s`: how long a reset
    board ignores input. `tamper`: what noise on the line does to a frame on its way to the
    board (the frame check must catch it).
    """

    resets_on_dtr: bool = False
    reset_on_open: bool = False
    boot_s: float = 0.05
    tamper: Callable[[bytes], bytes] | None = None


class _Port:
    """The serial port as the RFC 2217 server side sees it: settings and modem lines."""

    def __init__(self, on_dtr: Callable[[bool], None]) -> None:
        self._on_dtr = on_dtr
        self._dtr = False
        self.rts = False
        self.baudrate = 115200
        self.bytesize = 8
        self.parity = "N"
        self.stopbits = 1
        self.rtscts = False
        self.xonxoff = False
        self.break_condition = False
        self.cts = self.dsr = self.ri = self.cd = False

    @property
    def dtr(self) -> bool:
        return self._dtr

    @dtr.setter
    def dtr(self, value: bool) -> None:
        was, self._dtr = self._dtr, bool(value)
        if self._dtr and not was:
            self._on_dtr(True)

    def reset_input_buffer(self) -> None:
        pass

    def reset_output_buffer(self) -> None:
        pass


class _Writer:
    """The connection the RFC 2217 protocol answers on (telnet negotiation replies)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.conn.sendall(data)


class SerialEmulator(Served):
    """Serve a `BoardCore`; `path` is the port to open. Use as a context manager.

    `link='pty'` (default) serves a pseudo-terminal, `link='rfc2217'` a TCP port on
    127.0.0.1 reached as `rfc2217://127.0.0.1:<port>`.
    """

    def __init__(
        self,
        core: BoardCore,
        faults: FaultConfig | None = None,
        *,
        deaf_s: float = 0.02,
        line: BoardLine | None = None,
        link: str = "pty",
    ) -> None:
        if link not in ("pty", "rfc2217"):
            raise ValueError(f"link {link!r}: 'pty' or 'rfc2217'")
        self.core = core
        self.faults = FaultInjector(faults or FaultConfig())
        self.deaf_s = deaf_s
        self.line = line or BoardLine()
        self.link = link
        self.frames = 0
        self.bytes_lost = 0
        self.opens = 0
        self._deaf_host = False
        self._deaf_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = -1
        self._slave = -1
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._manager: Any = None
        self._send_lock = threading.Lock()
        self.path = ""

    def start(self) -> SerialEmulator:
        """Open the port and serve (once; starting a running emulator does nothing)."""
        if self._thread is not None:
            return self
        if self.link == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            tty.setraw(self._master)
            os.set_blocking(self._master, False)
            self.path = pty_link(self._slave)
            target = self._serve_pty
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, 0))
            sock.listen(2)
            sock.settimeout(POLL_S)
            self._listener = sock
            self.path = f"rfc2217://{HOST}:{sock.getsockname()[1]}"
            target = self._serve_rfc2217
        self._thread = threading.Thread(target=target, name="serial-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.link == "pty" and self.path:
            unlink_pty(self.path)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        for s in (self._conn, self._listener):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()

    def replug(self, core: BoardCore) -> None:
        """Another board on the same port (RFC 2217 only): the host's connection drops, as
        when a USB board is unplugged, and whoever connects next talks to `core`, as when
        the operating system hands the same device path to another board."""
        if self.link != "rfc2217":
            raise ValueError("replug needs link='rfc2217' (a pty's path dies with it)")
        with self._send_lock:
            self.core = core
            conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- the board's reactions -----------------------------------------------------------
    def reset_board(self, why: str) -> None:
        """A reset: the core loses its RAM and the board ignores input while it boots."""
        log.debug("board reset (%s)", why)
        self.core.power_cycle()
        self._deaf_until = time.monotonic() + self.line.boot_s

    def _dtr(self, asserted: bool) -> None:
        if asserted and self.line.resets_on_dtr:
            self.reset_board("DTR asserted")

    # -- pty -------------------------------------------------------------------------------
    def _read_available(self) -> bytes:
        ready, _, _ = select.select([self._master], [], [], POLL_S)
        if not ready:
            return b""
        try:
            return os.read(self._master, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # no reader on the other side at this instant
            time.sleep(0.01)
            return b""

    def _send_pty(self, data: bytes) -> None:
        """Transmit like a UART: a host that reads gets every byte (the emulator waits for
        it to drain the terminal's buffer); bytes for a host that does not read are lost,
        without holding up the next request (once a send is cut short, later sends do not
        wait until one gets through whole)."""
        wait_s = 0.0 if self._deaf_host else 0.5
        deadline = time.monotonic() + wait_s
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return
            if view:
                if time.monotonic() >= deadline:
                    self._deaf_host = True
                    self.bytes_lost += len(view)
                    return
                select.select([], [self._master], [], 0.01)
        self._deaf_host = False

    def _serve_pty(self) -> None:
        lines = LineBuffer(MAX_FRAME)
        while not self._stop.is_set():
            for line in lines.feed(self._read_available()):
                if line and self._frame(line, self._send_pty):
                    lines.clear()  # a link reset: the rest of the input is lost
                    break
            self._poll(self._send_pty)

    # -- RFC 2217 --------------------------------------------------------------------------
    def _send_tcp(self, data: bytes) -> None:
        with self._send_lock:
            conn, manager = self._conn, self._manager
            if conn is None or manager is None:
                self.bytes_lost += len(data)
                return
            try:
                conn.sendall(b"".join(manager.escape(data)))
            except OSError:
                self.bytes_lost += len(data)

    def _serve_rfc2217(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                self._poll(self._send_tcp)
                continue
            except OSError:
                return
            self.opens += 1
            conn.settimeout(POLL_S)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            port = _Port(self._dtr)
            with self._send_lock:
                self._conn = conn
                self._manager = rfc2217.PortManager(port, _Writer(conn))
            if self.line.reset_on_open:
                self.reset_board("port opened")
            self._serve_connection(conn)
            with self._send_lock:
                self._conn = self._manager = None
            with contextlib.suppress(OSError):
                conn.close()
            # the host's close drops DTR (and the board is left running)
            port._dtr = False

    def _serve_connection(self, conn: socket.socket) -> None:
        lines = LineBuffer(MAX_FRAME)
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                data = None
            except OSError:
                return
            if data is not None:
                if not data:
                    return
                with self._send_lock:
                    manager = self._manager
                payload = b"".join(manager.filter(data)) if manager is not None else b""
                for line in lines.feed(payload):
                    if line and self._frame(line, self._send_tcp):
                        lines.clear()
                        break
            self._poll(self._send_tcp)

    # -- frames ----------------------------------------------------------------------------
    def _poll(self, send: Callable[[bytes], None]) -> None:
        frames = self.core.poll()
        if frames:
            send(b"".join(f + b"\n" for f in frames))

    def _frame(self, line: bytes, send: Callable[[bytes], None]) -> bool:
        """Handle one frame; True when the link was reset (pending input is dropped)."""
        if time.monotonic() < self._deaf_until:
            return False  # booting: the UART is not read yet
        self.frames += 1
        if self.line.tamper is not None:
            line = self.line.tamper(line)
        fault = self.faults.draw()
        if fault is Fault.DISCONNECT_BEFORE:
            self._link_reset(send)
            return True
        if fault is Fault.GARBLE_IN:
            line = self.faults.garble(line, printable_safe=True)
        replies = self.core.handle(line)
        if fault is Fault.DISCONNECT_AFTER:
            self._link_reset(send)
            return True
        if fault is Fault.DROP:
            return False
        delay = self.faults.config.latency_s
        if fault is Fault.SPIKE:
            delay += self.faults.config.spike_s
        if delay:
            time.sleep(delay)
        data = b"".join(r + b"\n" for r in replies)
        if fault is Fault.GARBLE_OUT:
            data = self.faults.garble(data, printable_safe=True)
        if data:
            send(data)
        return False

    def _link_reset(self, send: Callable[[bytes], None]) -> None:
        self.core.link_reset()
        end = time.monotonic() + self.deaf_s
        while time.monotonic() < end and not self._stop.is_set():
            if self.link == "pty":
                self._read_available()  # input during the reset is lost
            else:
                time.sleep(POLL_S)
