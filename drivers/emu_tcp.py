"""The VISA station emulator on loopback TCP: pulse source and switch matrix, each on its port.

Reachable with pyvisa as ``TCPIP::127.0.0.1::<port>::SOCKET``. Only 127.0.0.1 is ever
bound. Connection threads poll a stop flag, so `stop()` always returns within a second.
Faults are drawn per request (what one write of the client brings: one line, or the
several lines of a TSP exchange); garbling corrupts reply bytes only (TCP itself does not
corrupt requests), with non-ASCII bytes as a bad link would produce.

`LinkBehaviour` reproduces what an instrument's output queue does on interfaces where it is
not tied to a connection (GPIB, USB-TMC, VXI-11, HiSLIP): a reply produced after the client
gave up on it, or left by a previous session, is delivered on the next connection too.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from drivers import kxci as K
from drivers.emu_kxci import KxciCore
from drivers.emu_lines import LineBuffer, Served, socket_chunks
from drivers.emu_scpi import MAX_LINE, MatrixCore, SmuCore, Station
from drivers.faults import Fault, FaultConfig, FaultInjector

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class Core(Protocol):
    station: Station

    def handle(self, line: bytes) -> list[str]: ...


@dataclass
class LinkBehaviour:
    """How an instrument's output reaches the client.

    `persistent_output`: replies outlive the connection (the client's reconnect does not
    empty them). `stale_lines`: output a previous session left unread, sent first.
    `late`: (line prefix, seconds): the reply to the first line starting with the prefix
    comes that much later (each entry once).
    """

    persistent_output: bool = False
    stale_lines: list[str] = field(default_factory=list)
    late: list[tuple[str, float]] = field(default_factory=list)


class _Listener:
    def __init__(
        self,
        name: str,
        handle: Callable[[bytes], list[str]],
        port: int,
        owner: ScpiEmulator,
        terminator: bytes,
        link: LinkBehaviour,
    ) -> None:
        self.name = name
        self.handle = handle
        self.owner = owner
        self.terminator = terminator
        self.link = link
        self.held: list[bytes] = [s.encode("ascii") + terminator for s in link.stale_lines]
        self.current: socket.socket | None = None
        self.send_lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.threads: list[threading.Thread] = []
        self.generation = 0
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True)

    def _accept(self) -> None:
        while not self.owner.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.owner.station.lock:
                self.generation += 1  # the new connection supersedes the previous one
                self.connections += 1
            with self.send_lock:
                self.current = conn
                held, self.held = self.held, []
            for data in held:
                self._send(conn, data)
            t = threading.Thread(target=self._serve, args=(conn, self.generation), daemon=True)
            self.threads = [th for th in self.threads if th.is_alive()]
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, generation: int) -> None:
        conn.settimeout(0.1)
        lines = LineBuffer(MAX_LINE, self.terminator)
        with conn:
            for chunk in socket_chunks(conn, self.owner.stopping):
                request = lines.feed(chunk)
                if request and not self._request(conn, request, generation):
                    return

    def _late(self, line: bytes) -> float:
        text = line.decode("ascii", "replace")
        for k, (prefix, delay) in enumerate(self.link.late):
            if text.startswith(prefix):
                del self.link.late[k]
                return delay
        return 0.0

    def _request(self, conn: socket.socket, request: list[bytes], generation: int) -> bool:
        """Handle the lines of one request; False when the connection was dropped.

        One connection at a time, like an instrument's single command parser: once a newer
        connection is accepted, input still pending on an older one is discarded, so a
        client that reconnects knows that nothing it sent before can still take effect.
        """
        owner = self.owner
        for _ in request:
            owner.count_line()
        fault = owner.draw()
        if fault is Fault.DISCONNECT_BEFORE:
            return False
        replies: list[str] = []
        delay = 0.0
        with owner.station.lock:
            if generation != self.generation:
                return False
            for line in request:
                replies += self.handle(line)
                delay += self._late(line)
        if fault is Fault.DISCONNECT_AFTER:
            return False
        if not replies or fault is Fault.DROP:
            return True
        delay += owner.faults.config.latency_s + (
            owner.faults.config.spike_s if fault is Fault.SPIKE else 0.0
        )
        if delay:
            time.sleep(delay)
        data = b"".join(r.encode("ascii") + self.terminator for r in replies)
        if fault is Fault.GARBLE_OUT:
            data = owner.garble(data)
        return self._send(conn, data)

    def _send(self, conn: socket.socket, data: bytes) -> bool:
        """Send to `conn`; with a persistent output queue, to whichever connection is
        current (held until one comes if none is)."""
        with self.send_lock:
            target = conn
            if self.link.persistent_output:
                if self.current is None or not _open(self.current):
                    self.held.append(data)
                    return True
                target = self.current
            try:
                target.sendall(data)
            except OSError:
                if self.link.persistent_output:
                    self.held.append(data)
                return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.thread.join(timeout=2.0)
        for t in self.threads:
            t.join(timeout=2.0)


def _open(conn: socket.socket) -> bool:
    """False once the peer has closed `conn` (a pending zero-length read)."""
    try:
        ready, _, _ = select.select([conn], [], [], 0)
        if ready:
            return conn.recv(1, socket.MSG_PEEK) != b""
    except (OSError, ValueError):  # closed (a negative descriptor)
        return False
    return True


class ScpiEmulator(Served):
    """The pulse source on `smu_port`, the switch matrix on `matrix_port` (0: any free port).

    The source is a B2900 (`SmuCore`, LF-terminated) unless another core is given (a
    `KxciCore` for the 4200A, NUL-terminated).
    """

    def __init__(
        self,
        station: Station,
        faults: FaultConfig | None = None,
        *,
        port: int = 0,
        matrix_port: int | None = None,
        source: Core | None = None,
        matrix: MatrixCore | None = None,
        source_link: LinkBehaviour | None = None,
        matrix_link: LinkBehaviour | None = None,
    ) -> None:
        self.station = station
        self.smu: Core = source if source is not None else SmuCore(station)
        self.matrix = matrix if matrix is not None else MatrixCore(station)
        self.faults = FaultInjector(faults or FaultConfig())
        self.stopping = threading.Event()
        self.lines = 0
        self._lock = threading.Lock()
        term = K.LAN_TERMINATION if isinstance(self.smu, KxciCore) else "\n"
        self._smu = _Listener(
            "source",
            self.smu.handle,
            port,
            self,
            term.encode("ascii"),
            source_link or LinkBehaviour(),
        )
        mport = (self._smu.port + 1 if port else 0) if matrix_port is None else matrix_port
        try:
            self._matrix = _Listener(
                "matrix", self.matrix.handle, mport, self, b"\n", matrix_link or LinkBehaviour()
            )
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

    @property
    def connections(self) -> tuple[int, int]:
        """Connections accepted so far: (source, matrix)."""
        return self._smu.connections, self._matrix.connections

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
