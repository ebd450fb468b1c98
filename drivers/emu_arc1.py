"""An emulated ArC ONE: the board's firmware as a state machine, served on a pty or loopback TCP.

`Arc1Core` reads the command stream line by line exactly as drivers/arc1.py writes it and
answers as the board does: float32 resistances of a simulated crossbar (any preset), the
init confirmation ``1``, the firmware version. It has no error channel either: a job it
does not know, an argument it cannot parse, an address outside the configured array or a
pulse outside +-12 V / 90 ns-10 s is ignored (no pulse, no reply) and counted.

Where the firmware's behaviour is not public, the emulator makes a choice and says so:
- before an init handshake (at power-up, after ``00``) reads and pulses are ignored;
- a pulse with nothing selected is ignored;
- a line that is not a job code while the board waits for one is ignored;
- crosspoints beyond the connected crossbar read as an open circuit (+inf ohm).

Pulses are applied in order and logged one by one (device, V, width: `PulseLog`); they reach
the simulated array as one pulse plan when the host next reads (or resets), so that a plan
sent pulse by pulse lands on the array exactly as the same plan does on the simulator.

Faults (drivers/faults.py), drawn per command: `latency` every command takes that long;
`spike` its reply comes late; `drop` its reply is lost; `garble` reply bytes are corrupted
(the USB link checks what the host sends, so requests are not); `disconnect` the board
resets before or after executing the command (its settings are lost: the host must send
``00`` and the init handshake again) and ignores input for a moment.
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
from dataclasses import dataclass, field

import numpy as np

from drivers import arc1 as A
from drivers.emu_array import StagedGroup, plan_of
from drivers.emu_lines import LineBuffer, Served, pty_link, socket_chunks, unlink_pty
from drivers.faults import Fault, FaultConfig, FaultInjector
from protocols.backend import CrossbarBackend
from sim_backend.readout import resistance_f32

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_LINE = 256
FIRMWARE = (2, 0)


@dataclass(frozen=True)
class AppliedPulse:
    """One pulse the board applied: device (1-based W, B), amplitude, width, order, and the
    run of pulses it belongs to (a read, reset or init ends a run)."""

    seq: int
    word: int
    bit: int
    amplitude_v: float
    width_s: float
    run: int = 0


class PulseLog:
    """Thread-safe record of every pulse applied."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[AppliedPulse] = []
        self._run = 0
        self._ended: dict[int, str] = {}

    def add(self, word: int, bit: int, amplitude_v: float, width_s: float) -> None:
        with self._lock:
            seq = len(self._entries)
            self._entries.append(AppliedPulse(seq, word, bit, amplitude_v, width_s, self._run))

    def end_run(self, why: str) -> None:
        """A command other than select or pulse (`why`: the job, or "link" for a dropped
        link): the pulses after it are a new run."""
        with self._lock:
            self._ended[self._run] = why
            self._run += 1

    def runs(self) -> list[tuple[int, str]]:
        """(pulses, what ended the run) per run, in order; runs without pulses left out."""
        sizes: dict[int, int] = {}
        for e in self.entries:
            sizes[e.run] = sizes.get(e.run, 0) + 1
        with self._lock:
            return [(sizes[k], self._ended.get(k, "")) for k in sorted(sizes)]

    @property
    def entries(self) -> list[AppliedPulse]:
        with self._lock:
            return list(self._entries)

    def counts(self, rows: int, cols: int) -> np.ndarray:
        """Pulses per device (0-based row = W - 1, col = B - 1)."""
        out = np.zeros((rows, cols), dtype=np.int64)
        for e in self.entries:
            out[e.word - 1, e.bit - 1] += 1
        return out


@dataclass
class Command:
    """A complete command as received: job code and argument lines."""

    job: str
    args: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join([self.job, *self.args])


class Arc1Core:
    """The board: settings, the selected device, the pulse log and the simulated crossbar."""

    def __init__(
        self, array: CrossbarBackend, *, firmware: tuple[int, int] | None = FIRMWARE
    ) -> None:
        self.array = array
        self.rows, self.cols = array.shape
        self.firmware = firmware
        self.settings: A.Settings | None = None
        self.selected: tuple[int, int] | None = None
        self.log = PulseLog()
        self.ignored: list[str] = []
        self.resets = 0
        self._pending: list[StagedGroup] = []
        self._pending_bias = "v2"
        self._job: str | None = None
        self._args: list[str] = []
        self.lock = threading.RLock()

    # -- framing -----------------------------------------------------------------------------
    def push(self, line: bytes) -> Command | None:
        """Take one received line; return a command once its last argument has arrived."""
        with self.lock:
            try:
                text = line.decode("ascii").strip()
            except UnicodeDecodeError:
                text = "\ufffd"
            if self._job is None:
                if text not in A.ARGS:
                    self.ignored.append(f"not a job code: {text[:20]!r}")
                    return None
                self._job, self._args = text, []
            else:
                self._args.append(text)
            if len(self._args) < A.ARGS[self._job]:
                return None
            cmd = Command(self._job, self._args)
            self._job, self._args = None, []
            return cmd

    def handle(self, data: bytes) -> bytes:
        """All replies to a chunk of input (the dry run and the protocol tests use this)."""
        out = bytearray()
        for line in data.split(b"\n")[:-1]:  # whole lines only, as the host sends them
            cmd = self.push(line)
            if cmd is not None:
                out += self.execute(cmd)
        return bytes(out)

    # -- state -------------------------------------------------------------------------------
    def power_cycle(self, why: str = A.RESET) -> None:
        """A reset (command ``00``, or a dropped link: `why` "link"): settings and selection
        are lost."""
        with self.lock:
            self.log.end_run(why)
            self.flush()
            self.settings = None
            self.selected = None
            self._job, self._args = None, []
            self.resets += 1

    def flush(self) -> None:
        """Hand the pulses applied since the last read to the array as one plan."""
        with self.lock:
            if self._pending:
                plan = plan_of(self.rows, self.cols, self._pending, self._pending_bias)
                self._pending = []
                self.array.apply(plan)

    def _refuse(self, cmd: Command, why: str) -> bytes:
        self.ignored.append(f"{cmd.text[:60]}: {why}")
        return b""

    # -- commands ----------------------------------------------------------------------------
    def execute(self, cmd: Command) -> bytes:
        """Run a complete command; its reply bytes (empty for most jobs)."""
        with self.lock:
            try:
                return self._dispatch(cmd)
            except (ValueError, A.ArgError) as exc:
                return self._refuse(cmd, str(exc))

    def _dispatch(self, cmd: Command) -> bytes:
        job, args = cmd.job, cmd.args
        if job not in (A.SELECT, A.PULSE_ACTIVE, A.SET_HARDWARE, A.PULSE_READ, A.RESET):
            self.log.end_run(job)
        if job == A.RESET:
            self.power_cycle()
            return b""
        if job == A.INIT:
            return self._init(args)
        if job == A.VERSION:
            if self.firmware is None:  # old firmware: no such job
                return self._refuse(cmd, "firmware without a version query")
            return A.encode_version(*self.firmware)
        s = self.settings
        if s is None:
            return self._refuse(cmd, "not initialised")
        if job == A.SET_READ:
            mode, v = A.parse_int(args[0]), A.parse_float(args[1])
            self.settings = _replace(s, read_mode=mode, read_v=v)
            A.check_settings(self.settings)
            return b""
        if job == A.SET_HARDWARE:
            cycles, sneak = A.parse_int(args[0]), A.parse_int(args[1])
            new = _replace(s, cycles=cycles, sneak_path=sneak)
            A.check_settings(new)
            self.flush()  # pulses so far went under the previous scheme
            self.settings = new
            return b""
        if job == A.SELECT:
            self.selected = self._address(args[0], args[1])
            return b""
        if job == A.PULSE_ACTIVE:
            if self.selected is None:
                return self._refuse(cmd, "no device selected")
            self._pulse(*self.selected, A.parse_float(args[0]), A.parse_float(args[1]))
            return b""
        if job == A.PULSE_READ:
            word, bit = self._address(args[0], args[1])
            self.selected = (word, bit)
            self._pulse(word, bit, A.parse_float(args[2]), A.parse_float(args[3]))
            self.log.end_run(job)
            return A.encode_floats(self._resistances([word - 1], [bit - 1])[0])
        if job == A.READ_ONE:
            word, bit = self._address(args[0], args[1])
            self.selected = (word, bit)
            return A.encode_floats(self._resistances([word - 1], [bit - 1])[0])
        if job == A.READ_ALL:
            mode, words, bits = (A.parse_int(a) for a in args)
            if mode != A.READ_ALL_MODE or not (1 <= words <= s.words and 1 <= bits <= s.bits):
                return self._refuse(cmd, f"read-all mode {mode} of {words} x {bits}")
            r = self._resistances(list(range(words)), list(range(bits)))
            return A.encode_floats(r.reshape(-1))  # word-major: W outer, B inner
        return self._refuse(cmd, "unknown job")

    def _init(self, args: list[str]) -> bytes:
        try:
            cycles, words, bits, mode, session, sneak = (A.parse_int(a) for a in args[:6])
            new = A.Settings(cycles, words, bits, mode, session, sneak, A.parse_float(args[6]))
            A.check_settings(new)
        except (ValueError, A.ArgError) as exc:
            self.ignored.append(f"init refused: {exc}")
            return b"0\n"
        self.flush()
        self.settings = new
        self.selected = None
        return A.INIT_OK + b"\n"

    def _address(self, w_text: str, b_text: str) -> tuple[int, int]:
        assert self.settings is not None
        word, bit = A.parse_int(w_text), A.parse_int(b_text)
        A.check_address(word, bit, self.settings.words, self.settings.bits)
        return word, bit

    def _pulse(self, word: int, bit: int, amplitude_v: float, width_s: float) -> None:
        assert self.settings is not None
        A.check_pulse(amplitude_v, width_s)
        if amplitude_v == 0.0:
            raise A.ArgError("a 0 V pulse")
        self.log.add(word, bit, amplitude_v, width_s)
        r, c = word - 1, bit - 1
        if r >= self.rows or c >= self.cols:
            return  # no device at this crosspoint
        bias = A.BIAS_OF_SNEAK[self.settings.sneak_path]
        if self._pending and bias != self._pending_bias:
            self.flush()
        self._pending_bias = bias
        last = self._pending[-1] if self._pending else None
        if last is None or (last.amplitude_v, last.width_s) != (amplitude_v, width_s):
            zeros = np.zeros((self.rows, self.cols), dtype=np.int64)
            last = StagedGroup(amplitude_v, width_s, False, zeros)
            self._pending.append(last)
        last.counts[r, c] += 1

    def _resistances(self, rows: list[int], cols: list[int]) -> np.ndarray:
        """float32 resistances of a block (+inf where no device is connected)."""
        self.flush()
        out = np.full((len(rows), len(cols)), np.inf, dtype=np.float32)
        rr = [r for r in rows if r < self.rows]
        cc = [c for c in cols if c < self.cols]
        if rr and cc:
            g = self.array.read(rows=rr, cols=cc)
            out[: len(rr), : len(cc)] = resistance_f32(g)
        return out


def _replace(s: A.Settings, **kw: object) -> A.Settings:
    from dataclasses import replace

    return replace(s, **kw)  # type: ignore[arg-type]


class Arc1Emulator(Served):
    """Serve an `Arc1Core` on a pseudo-terminal (`transport='pty'`) or on 127.0.0.1 TCP.

    `url` is what the host opens: the pty path, or ``socket://127.0.0.1:<port>``.
    """

    def __init__(
        self,
        core: Arc1Core,
        faults: FaultConfig | None = None,
        *,
        transport: str = "pty",
        port: int = 0,
        reset_s: float = 0.0,
        deaf_s: float = 0.02,
    ) -> None:
        if transport not in ("pty", "tcp"):
            raise ValueError(f"transport must be 'pty' or 'tcp', got {transport!r}")
        self.core = core
        self.faults = FaultInjector(faults or FaultConfig())
        self.transport = transport
        self.reset_s = reset_s
        self.deaf_s = deaf_s
        self.commands = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1
        self._sock: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._deaf_until = 0.0
        self.url = ""
        if transport == "tcp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))
            sock.listen(4)
            sock.settimeout(0.1)
            self._sock = sock
            self.url = f"socket://{HOST}:{sock.getsockname()[1]}"

    @property
    def path(self) -> str:
        return self.url

    def start(self) -> Arc1Emulator:
        if self._thread is not None:
            return self
        if self.transport == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            tty.setraw(self._master)
            os.set_blocking(self._master, False)
            self.url = pty_link(self._slave)
            target = self._serve_pty
        else:
            target = self._serve_tcp
        self._thread = threading.Thread(target=target, name="arc1-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.transport == "pty" and self.url:
            unlink_pty(self.url)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        for s in (self._conn, self._sock):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        self.core.flush()

    # -- serving -----------------------------------------------------------------------------
    def _serve_pty(self) -> None:
        lines = LineBuffer(MAX_LINE)
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                time.sleep(0.01)
                continue
            self._feed(lines, data, self._send_pty)

    def _send_pty(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 0.5
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
                    return  # nobody reads: the bytes are lost, as on a UART
                select.select([], [self._master], [], 0.01)

    def _serve_tcp(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            old, self._conn = self._conn, conn  # a new connection supersedes the old one
            if old is not None:
                with contextlib.suppress(OSError):
                    old.close()
            conn.settimeout(0.05)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            lines = LineBuffer(MAX_LINE)

            def send(data: bytes, conn: socket.socket = conn) -> None:
                with contextlib.suppress(OSError):
                    conn.sendall(data)

            for chunk in socket_chunks(conn, self._stop):
                self._feed(lines, chunk, send)
            with contextlib.suppress(OSError):
                conn.close()

    def _feed(self, lines: LineBuffer, data: bytes, send: object) -> None:
        assert callable(send)
        now = time.monotonic()
        if now < self._deaf_until:
            return  # resetting: input is lost
        for line in lines.feed(data):
            cmd = self.core.push(line)
            if cmd is None:
                continue
            if self._command(cmd, send):
                lines.clear()
                return

    def _command(self, cmd: Command, send: object) -> bool:
        """Execute one command with its fault; True when the board reset (input lost)."""
        assert callable(send)
        self.commands += 1
        fault = self.faults.draw(inbound_garble=False)
        if fault is Fault.DISCONNECT_BEFORE:
            self._reset(self.deaf_s)
            return True
        latency = self.faults.config.latency_s
        if latency:
            time.sleep(latency)
        reply = self.core.execute(cmd)
        if cmd.job == A.RESET:
            self._deaf_until = time.monotonic() + self.reset_s
        if fault is Fault.DISCONNECT_AFTER:
            self._reset(self.deaf_s)
            return True
        if not reply or fault is Fault.DROP:
            return cmd.job == A.RESET and self.reset_s > 0
        if fault is Fault.SPIKE:
            time.sleep(self.faults.config.spike_s)
        if fault is Fault.GARBLE_OUT:
            reply = self.faults.garble(reply, printable_safe=False)
        send(reply)
        return False

    def _reset(self, deaf_s: float) -> None:
        self.core.power_cycle("link")
        self._deaf_until = time.monotonic() + deaf_s
