"""Scripted instrument peers for protocol tests, over real transports.

In the manner of PyMeasure's `expected_protocol`: a peer holds the exact ordered exchange
(line expected from the driver, reply lines to send) and records any mismatch, extra or
missing line. The peers are real endpoints (a TCP listener on 127.0.0.1 that pyvisa-py
connects to, a pseudo-terminal that pyserial opens), so terminations, encodings and
timeouts are exercised for real. `DROP` as a reply sends nothing; `CLOSE` drops the
connection after the line. A PtyPeer with `gap_s` set trickles its reply lines.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from dataclasses import dataclass, field

from drivers.emu_lines import LineBuffer, pty_link, socket_chunks, unlink_pty

DROP = b"<drop>"
CLOSE = b"<close>"


@dataclass
class Step:
    who: str
    expect: bytes
    replies: list[bytes] = field(default_factory=list)


class Script:
    """The shared, ordered exchange across the peers of one test."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.pos = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def take(self, who: str, line: bytes) -> list[bytes]:
        with self.lock:
            if self.pos >= len(self.steps):
                self.errors.append(f"{who}: unexpected extra line {line!r}")
                return []
            step = self.steps[self.pos]
            if step.who != who or step.expect != line:
                self.errors.append(
                    f"step {self.pos}: expected {step.who} {step.expect!r}, got {who} {line!r}"
                )
                return []
            self.pos += 1
            return step.replies

    def verify(self) -> None:
        assert not self.errors, "\n".join(self.errors)
        assert self.pos == len(self.steps), (
            f"only {self.pos} of {len(self.steps)} steps happened; next expected "
            f"{self.steps[self.pos].who} {self.steps[self.pos].expect!r}"
        )


class TcpPeer:
    """A scripted instrument on 127.0.0.1 (one connection at a time, reconnects allowed);
    lines end with `terminator` both ways (LF, or NUL like a 4200A on the LAN)."""

    def __init__(self, who: str, script: Script, terminator: bytes = b"\n") -> None:
        self.who = who
        self.script = script
        self.terminator = terminator
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.resource = f"TCPIP::127.0.0.1::{self.port}::SOCKET"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = LineBuffer(1 << 20, self.terminator)
        with conn:
            for chunk in socket_chunks(conn, self._stop):
                for line in lines.feed(chunk):
                    replies = self.script.take(self.who, line)
                    if CLOSE in replies:
                        return
                    out = b"".join(r + self.terminator for r in replies if r != DROP)
                    if out:
                        conn.sendall(out)

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2.0)


class PtyPeer:
    """A scripted board on a pseudo-terminal; `path` is the port to open."""

    def __init__(self, who: str, script: Script) -> None:
        self.who = who
        self.script = script
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = pty_link(self.slave)
        #: Pause before each reply line (0: a step's replies go out at once).
        self.gap_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lines = LineBuffer(1 << 20)
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                if self._stop.is_set():  # stop only once every byte sent so far is taken
                    return
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.01)
                continue
            for line in lines.feed(chunk):
                replies = [r for r in self.script.take(self.who, line) if r not in (DROP, CLOSE)]
                if self.gap_s > 0.0:  # one reply line every gap_s, until stopped
                    for r in replies:
                        if self._stop.wait(self.gap_s):
                            return
                        os.write(self.master, r + b"\n")
                elif replies:
                    os.write(self.master, b"".join(r + b"\n" for r in replies))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        unlink_pty(self.path)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
