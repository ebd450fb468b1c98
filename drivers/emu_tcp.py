"""The VISA station emulator on loopback TCP: SMU and switch matrix, each on its own port.

Reachable with pyvisa as ``TCPIP::127.0.0.1::<port>::SOCKET``. Only 127.0.0.1 is ever
bound. Connection threads poll a stop flag, so `stop()` always returns within a second.
Faults are drawn per received line; garbling corrupts reply bytes only (TCP itself does
not corrupt requests), with non-ASCII bytes as a bad link would produce.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

from drivers.emu_lines import LineBuffer, Served, socket_chunks
from drivers.emu_scpi import MAX_LINE, MatrixCore, SmuCore, Station
from drivers.faults import Fault, FaultConfig, FaultInjector

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class _Listener:
    def __init__(
        self,
        name: str,
        handle: Callable[[bytes], list[str]],
        port: int,
        owner: ScpiEmulator,
    ) -> None:
        self.name = name
        self.handle = handle
        self.owner = owner
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.threads: list[threading.Thread] = []
        self.generation = 0
        self.thread = threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True)

    def _accept(self) -> None:
        while not self.owner.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.owner.station.lock:
                self.generation += 1  # the new connection supersedes the previous one
            t = threading.Thread(target=self._serve, args=(conn, self.generation), daemon=True)
            self.threads = [th for th in self.threads if th.is_alive()]
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, generation: int) -> None:
        conn.settimeout(0.1)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = LineBuffer(MAX_LINE)
        with conn:
            for chunk in socket_chunks(conn, self.owner.stopping):
                for line in lines.feed(chunk):
                    if not self._line(conn, line, generation):
                        return

    def _line(self, conn: socket.socket, line: bytes, generation: int) -> bool:
        """Handle one line; False when the connection was dropped.

        One connection at a time, like an instrument's single command parser: once a newer
        connection is accepted, input still pending on an older one is discarded, so a
        client that reconnects knows that nothing it sent before can still take effect.
        """
        owner = self.owner
        owner.count_line()
        fault = owner.draw()
        if fault is Fault.DISCONNECT_BEFORE:
            return False
        with owner.station.lock:
            if generation != self.generation:
                return False
            replies = self.handle(line)
        if fault is Fault.DISCONNECT_AFTER:
            return False
        if not replies or fault is Fault.DROP:
            return True
        delay = owner.faults.config.latency_s + (
            owner.faults.config.spike_s if fault is Fault.SPIKE else 0.0
        )
        if delay:
            time.sleep(delay)
        data = b"".join(r.encode("ascii") + b"\n" for r in replies)
        if fault is Fault.GARBLE_OUT:
            data = owner.garble(data)
        try:
            conn.sendall(data)
        except OSError:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.thread.join(timeout=2.0)
        for t in self.threads:
            t.join(timeout=2.0)


class ScpiEmulator(Served):
    """SMU on `smu_port`, switch matrix on `matrix_port` (0: any free port)."""

    def __init__(
        self,
        station: Station,
        faults: FaultConfig | None = None,
        *,
        port: int = 0,
        matrix_port: int | None = None,
    ) -> None:
        self.station = station
        self.smu = SmuCore(station)
        self.matrix = MatrixCore(station)
        self.faults = FaultInjector(faults or FaultConfig())
        self.stopping = threading.Event()
        self.lines = 0
        self._lock = threading.Lock()
        self._smu = _Listener("smu", self.smu.handle, port, self)
        mport = (self._smu.port + 1 if port else 0) if matrix_port is None else matrix_port
        try:
            self._matrix = _Listener("matrix", self.matrix.handle, mport, self)
        except OSError:
            self._smu.close()
            raise

    @property
    def smu_port(self) -> int:
        return self._smu.port

    @property
    def matrix_port(self) -> int:
        return self._matrix.port

    @property
    def smu_resource(self) -> str:
        return f"TCPIP::{HOST}::{self.smu_port}::SOCKET"

    @property
    def matrix_resource(self) -> str:
        return f"TCPIP::{HOST}::{self.matrix_port}::SOCKET"

    def count_line(self) -> None:
        with self._lock:
            self.lines += 1

    def draw(self) -> Fault:
        with self._lock:
            return self.faults.draw(inbound_garble=False)

    def garble(self, data: bytes) -> bytes:
        with self._lock:
            return self.faults.garble(data, printable_safe=False)

    def start(self) -> ScpiEmulator:
        """Serve (once; starting a running emulator does nothing)."""
        if self._smu.thread.is_alive():
            return self
        self._smu.thread.start()
        self._matrix.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._smu.close()
        self._matrix.close()
