"""A scripted ArC ONE on a pseudo-terminal, for byte-exact protocol tests.

In the manner of PyMeasure's `expected_protocol`: the peer holds the ordered exchange, each
step one line the driver must send and the raw bytes to answer (float32 values, the init
line ``1``, or nothing), and records any mismatch, extra or missing line. It is a real
endpoint: pyserial opens the pty with the ArC ONE's settings, so terminations, binary
replies and timeouts are exercised for real.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty

import numpy as np

from drivers.emu_lines import LineBuffer, pty_link, unlink_pty


def f32(*values: float) -> bytes:
    """Replies as the board sends them: little-endian float32."""
    return np.asarray(values, dtype="<f4").tobytes()


def lines(*parts: str) -> list[tuple[bytes, bytes]]:
    """Steps for a command that gets no reply: one (line, b"") per line."""
    return [(p.encode("ascii"), b"") for p in parts]


class ArcScript:
    """The ordered exchange: (expected line, reply bytes) steps."""

    def __init__(self, steps: list[tuple[bytes, bytes]]) -> None:
        self.steps = steps
        self.pos = 0
        self.errors: list[str] = []
        self.received: list[bytes] = []
        self.lock = threading.Lock()

    def take(self, line: bytes) -> bytes:
        with self.lock:
            self.received.append(line)
            if self.pos >= len(self.steps):
                self.errors.append(f"unexpected extra line {line!r}")
                return b""
            expect, reply = self.steps[self.pos]
            if expect != line:
                self.errors.append(f"step {self.pos}: expected {expect!r}, got {line!r}")
                return b""
            self.pos += 1
            return reply

    def verify(self) -> None:
        assert not self.errors, "\n".join(self.errors)
        assert self.pos == len(self.steps), (
            f"only {self.pos} of {len(self.steps)} steps happened; next expected "
            f"{self.steps[self.pos][0]!r}"
        )


class ArcPty:
    """The scripted board on a pseudo-terminal; `path` is the port to open."""

    def __init__(self, script: ArcScript) -> None:
        self.script = script
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = pty_link(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = LineBuffer(4096)
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
            for line in buf.feed(chunk):
                reply = self.script.take(line)
                if reply:
                    os.write(self.master, reply)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        unlink_pty(self.path)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> ArcPty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
