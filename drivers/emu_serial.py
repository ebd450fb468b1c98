"""The pulse board emulator on a pseudo-terminal, with fault injection.

The emulator keeps its own handle on the terminal side so that the driver can close and
reopen the port (a reconnect) without the emulator seeing a hang-up. A "disconnect" fault
is a link reset of the board: the current frame is dropped (before or after it is
executed), the staging buffer is lost and the board ignores input for a moment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
import tty

from drivers.board import MAX_FRAME
from drivers.emu_board import BoardCore
from drivers.emu_lines import LineBuffer, Served
from drivers.faults import Fault, FaultConfig, FaultInjector

log = logging.getLogger(__name__)


class SerialEmulator(Served):
    """Serve a `BoardCore` on a pty; `path` is the port to open. Use as a context manager."""

    def __init__(
        self,
        core: BoardCore,
        faults: FaultConfig | None = None,
        *,
        deaf_s: float = 0.02,
    ) -> None:
        self.core = core
        self.faults = FaultInjector(faults or FaultConfig())
        self.deaf_s = deaf_s
        self.frames = 0
        self.bytes_lost = 0
        self._deaf_host = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = -1
        self._slave = -1
        self.path = ""

    def start(self) -> SerialEmulator:
        """Open the pty and serve (once; starting a running emulator does nothing)."""
        if self._thread is not None:
            return self
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._serve, name="serial-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    # -- serving ---------------------------------------------------------------------------
    def _read_available(self) -> bytes:
        ready, _, _ = select.select([self._master], [], [], 0.05)
        if not ready:
            return b""
        try:
            return os.read(self._master, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # no reader on the other side at this instant
            time.sleep(0.01)
            return b""

    def _send(self, data: bytes) -> None:
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

    def _serve(self) -> None:
        lines = LineBuffer(MAX_FRAME)
        while not self._stop.is_set():
            for line in lines.feed(self._read_available()):
                if line and self._frame(line):
                    lines.clear()  # a link reset: the rest of the input is lost
                    break

    def _frame(self, line: bytes) -> bool:
        """Handle one frame; True when the link was reset (pending input is dropped)."""
        self.frames += 1
        fault = self.faults.draw()
        if fault is Fault.DISCONNECT_BEFORE:
            self._link_reset()
            return True
        if fault is Fault.GARBLE_IN:
            line = self.faults.garble(line, printable_safe=True)
        replies = self.core.handle(line)
        if fault is Fault.DISCONNECT_AFTER:
            self._link_reset()
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
        self._send(data)
        return False

    def _link_reset(self) -> None:
        self.core.link_reset()
        end = time.monotonic() + self.deaf_s
        while time.monotonic() < end and not self._stop.is_set():
            self._read_available()  # input during the reset is lost
