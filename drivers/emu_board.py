"""The pulse board's firmware as a pure state machine: frames in, reply frames out.

No I/O here, so the same core serves the serial emulators, the dry-run writer and the
fuzz tests. A batch is staged (BEGIN, SHAPE, ROW/PULSE) and applied by EXEC as one pulse
plan on the array; the board remembers the last applied batch number across link resets
(non-volatile memory on hardware), refuses a batch number that is not above it, and logs
what it applied.

Time is given by the caller (`now`), so a batch can take real time (`exec_s_per_pulse`):
while it runs the board still answers STAT?, LAST?, ID?, ABORT, SAFE and WDOG, refuses
everything else with ERR 8, and `poll(now)` delivers its DONE when it ends. ABORT (or the
watchdog, when the host has been silent too long) stops it after the pulses already fired
and records them as the batch's pulses; a reset of the board (`power_cycle`, an
Arduino-class board's reaction to DTR) stops it without recording anything, as a real
reset loses what was in RAM.

`glitches` (`drivers.faults.BoardGlitches`) makes the board misreport what it applied (a
DONE or LAST? with the wrong pulse count or batch number, a DONE never sent) while the
pulses themselves reach the array as staged: the disagreements the driver must notice.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from drivers import board as B
from drivers.emu_array import AppliedBatch, ArrayLog, StagedGroup, plan_of
from drivers.faults import BoardGlitches
from protocols.backend import CrossbarBackend
from protocols.plan import PulsePlan

MODEL = "MRNN-PB1"
FIRMWARE = "2.0"


@dataclass
class _Staging:
    batch: int
    bias: str
    groups: list[StagedGroup | None]
    counts: np.ndarray = field(repr=False)


@dataclass
class _Execution:
    batch: int
    tag: str
    groups: list[StagedGroup]
    bias: str
    pulses: int
    t0: float
    duration: float


@dataclass(frozen=True)
class Interrupted:
    """A batch stopped before its end: by ABORT or the watchdog (recorded) or a reset (not)."""

    batch: int
    pulses: int
    of: int
    by: str


def first_pulses(groups: list[StagedGroup], k: int) -> list[StagedGroup]:
    """The first `k` pulses of a batch in the order the board fires them: group by group,
    device by device (row-major), each device's train whole."""
    out: list[StagedGroup] = []
    left = k
    for g in groups:
        counts = np.zeros_like(g.counts)
        if left > 0:
            flat = g.counts.reshape(-1)
            cum = np.cumsum(flat)
            take = np.minimum(flat, np.maximum(left - (cum - flat), 0))
            counts.reshape(-1)[:] = take
            left -= int(take.sum())
        out.append(StagedGroup(g.amplitude_v, g.width_s, g.parallel, counts))
    return out


class BoardCore:
    """The board: a simulated array, the staging buffer and the applied-batch log."""

    def __init__(
        self,
        array: CrossbarBackend,
        *,
        serial: str = "EMU0001",
        exec_s_per_pulse: float = 0.0,
        glitches: BoardGlitches | None = None,
    ) -> None:
        self.array = array
        #: how the board misreports what it applied (none by default; may be changed live)
        self.glitches = glitches if glitches is not None else BoardGlitches()
        #: DONE replies withheld by `glitches.lose_done`
        self.lost_done = 0
        self.rows, self.cols = array.shape
        self.serial = serial
        self.exec_s_per_pulse = float(exec_s_per_pulse)
        self.log = ArrayLog()
        self.interrupted: list[Interrupted] = []
        self.last_batch = 0
        self.last_pulses = 0
        self.total_pulses = 0
        self.errors = 0
        self.resets = 0
        self.safe = True
        self.watchdog_ms = 0
        self.watchdog_trips = 0
        self.read_v = B.BOARD_POWER_UP_READ_V
        #: how many read requests (RROW?, RARR?) ran at each read voltage
        self.reads_at: Counter[float] = Counter()
        #: how many well-framed requests of each command (the word before any argument) came in
        self.commands: Counter[str] = Counter()
        self.last_heard = time.monotonic()
        self._staging: _Staging | None = None
        self._running: _Execution | None = None
        self._lock = threading.RLock()

    # -- link and power --------------------------------------------------------------------
    def link_reset(self) -> None:
        """A dropped link: the staging buffer is lost, the applied-batch record is kept."""
        with self._lock:
            self._staging = None

    def power_cycle(self, now: float | None = None) -> None:
        """The board resets: RAM is lost (staging, watchdog setting, a running batch, whose
        pulses already fired stay fired but are not recorded); non-volatile memory keeps
        the last applied batch."""
        with self._lock:
            now = time.monotonic() if now is None else now
            if self._running is not None:
                self._stop(now, "reset", record=False)
            self._staging = None
            self.watchdog_ms = 0
            self.read_v = B.BOARD_POWER_UP_READ_V
            self.safe = True
            self.resets += 1

    @property
    def executing(self) -> int:
        return self._running.batch if self._running is not None else 0

    def handle(self, line: bytes, now: float | None = None) -> list[bytes]:
        """Reply frames (without LF) for one received line; never raises."""
        with self._lock:
            now = time.monotonic() if now is None else now
            self.last_heard = now
            if len(line) > B.MAX_FRAME:
                return [self._err(B.NO_TAG, B.E_OVERFLOW, f"{len(line)} bytes")]
            try:
                tag, body = B.decode(line)
            except B.FrameError as exc:
                code = B.E_CRC if "checksum" in str(exc) else B.E_SYNTAX
                return [self._err(B.NO_TAG, code, "")]
            self.commands[body.split(" ", 1)[0]] += 1
            try:
                return [B.encode(tag, reply) for reply in self._dispatch(body, tag, now)]
            except _Refuse as exc:
                return [self._err(tag, exc.code, exc.detail)]

    def poll(self, now: float | None = None) -> list[bytes]:
        """Frames due without a request: the DONE of a batch that has ended. Also trips the
        watchdog when the host has been silent for longer than it allows."""
        with self._lock:
            now = time.monotonic() if now is None else now
            out: list[bytes] = []
            run = self._running
            if run is not None and now >= run.t0 + run.duration:
                out.extend(B.encode(run.tag, reply) for reply in self._done(self._finish(run)))
            if self.watchdog_ms and now - self.last_heard > self.watchdog_ms / 1000.0:
                self.watchdog_trips += 1
                if self._running is not None:
                    self._stop(now, "watchdog", record=True)
                self._safe()
                self.last_heard = now  # once per silence
            return out

    def _err(self, tag: str, code: int, detail: str) -> bytes:
        self.errors += 1
        return B.encode(tag, B.error(code, detail))

    # -- commands --------------------------------------------------------------------------
    def _dispatch(self, body: str, tag: str, now: float) -> list[str]:
        parts = body.split(" ")
        cmd, args = parts[0], parts[1:]
        if cmd == B.ID and not args:
            return [f"{B.R_ID} {MODEL} {self.serial} {FIRMWARE} {self.rows} {self.cols}"]
        if cmd == B.STAT and not args:
            staged = self._staging.batch if self._staging else 0
            return [
                f"{B.R_STAT} {self.last_batch} {staged} {self.total_pulses} {self.errors} "
                f"{self.executing} {int(self.safe)}"
            ]
        if cmd == B.LAST and not args:
            lie = self.glitches
            batch = self.last_batch + lie.last_batch_ahead
            return [f"{B.R_LAST} {batch} {self.last_pulses + lie.last_pulses_off}"]
        if cmd == B.ABORT and not args:
            if self._running is None:
                return [B.ok_abort(0, 0)]
            batch = self._running.batch
            done = self._stop(now, "abort", record=True)
            return [B.ok_abort(batch, done)]
        if cmd == B.SAFE and not args:
            if self._running is not None:
                self._stop(now, "safe", record=True)
            self._safe()
            return [B.ok_safe()]
        if cmd == B.WDOG and len(args) == 1:
            ms = _int(args[0], "watchdog")
            if ms > B.BOARD_MAX_WATCHDOG_MS:
                raise _Refuse(B.E_RANGE, f"watchdog {ms} ms")
            self.watchdog_ms = ms
            return [B.ok_watchdog(ms)]
        if cmd == B.READ_V_Q and not args:
            return [f"{B.R_READ_V} {B.num(self.read_v)}"]
        if self._running is not None:
            raise _Refuse(B.E_BUSY, f"batch {self._running.batch}")
        if cmd == B.READ_V and len(args) == 1:
            volts = _float(args[0], "read voltage")
            if not 0.0 < volts <= B.BOARD_MAX_READ_V:
                raise _Refuse(B.E_RANGE, f"read voltage {args[0][:20]}")
            self.read_v = volts
            return [B.ok_read_voltage(volts)]
        if cmd == B.RANGE and not args:
            info = self.array.info()
            return [f"{B.R_RANGE} {B.num(info.g_min_s)} {B.num(info.g_max_s)}"]
        if cmd == B.BEGIN and len(args) == 3:
            return self._begin(args)
        if cmd == B.SHAPE and len(args) == 5:
            return self._shape(args)
        if cmd == B.ROW and len(args) == 4:
            return self._row(args)
        if cmd == B.PULSE and len(args) == 5:
            return self._pulse(args)
        if cmd == B.EXEC and len(args) == 1:
            return self._exec(args, tag, now)
        if cmd == B.READ_ROW and len(args) == 1:
            r = _index(args[0], self.rows, "row")
            self.reads_at[self.read_v] += 1
            values = self.array.read(rows=[r])[0]
            return [B.row_values(r, [float(v) for v in values])]
        if cmd == B.READ_ARRAY and not args:
            self.reads_at[self.read_v] += 1
            g = self.array.read()
            lines = [B.row_values(r, [float(v) for v in g[r]]) for r in range(self.rows)]
            return [*lines, f"{B.R_END} {self.rows}"]
        raise _Refuse(B.E_SYNTAX, cmd[:20])

    def _safe(self) -> None:
        """Every output to 0 V and every line grounded; the staged batch is discarded."""
        self._staging = None
        self.safe = True

    def _staged(self, batch_text: str) -> _Staging:
        batch = _int(batch_text, "batch")
        if self._staging is None or self._staging.batch != batch:
            raise _Refuse(B.E_BATCH, f"batch {batch} is not staged")
        return self._staging

    def _begin(self, args: list[str]) -> list[str]:
        batch = _int(args[0], "batch")
        ngroups = _int(args[1], "groups")
        bias = args[2]
        if batch <= self.last_batch:
            raise _Refuse(B.E_STALE, f"{batch} <= last {self.last_batch}")
        if not 1 <= ngroups <= B.BOARD_MAX_GROUPS:
            raise _Refuse(B.E_RANGE, f"groups {ngroups}")
        if bias not in B.BIAS_SCHEMES:
            raise _Refuse(B.E_RANGE, f"bias {bias}")
        counts = np.zeros((ngroups, self.rows, self.cols), dtype=np.int64)
        self._staging = _Staging(batch, bias, [None] * ngroups, counts)
        return [B.ok_begin(batch, ngroups, bias)]

    def _group(self, staging: _Staging, text: str) -> int:
        return _index(text, len(staging.groups), "group")

    def _shape(self, args: list[str]) -> list[str]:
        staging = self._staged(args[0])
        g = self._group(staging, args[1])
        amp, width = _float(args[2], "amplitude"), _float(args[3], "width")
        if amp == 0.0 or abs(amp) > B.BOARD_MAX_ABS_V:
            raise _Refuse(B.E_RANGE, f"amplitude {amp!r}")
        if not B.BOARD_MIN_WIDTH_S <= width <= B.BOARD_MAX_WIDTH_S:
            raise _Refuse(B.E_RANGE, f"width {width!r}")
        if args[4] not in ("0", "1"):
            raise _Refuse(B.E_SYNTAX, "parallel flag")
        staging.groups[g] = StagedGroup(amp, width, args[4] == "1", staging.counts[g])
        return [B.ok_shape(staging.batch, g, amp, width, args[4] == "1")]

    def _row(self, args: list[str]) -> list[str]:
        staging = self._staged(args[0])
        g = self._group(staging, args[1])
        r = _index(args[2], self.rows, "row")
        fields = args[3].split(",")
        if len(fields) != self.cols:
            raise _Refuse(B.E_SYNTAX, f"{len(fields)} counts for {self.cols} columns")
        counts = [_count(f) for f in fields]
        staging.counts[g, r, :] = counts
        return [B.ok_row(staging.batch, g, r, sum(counts))]

    def _pulse(self, args: list[str]) -> list[str]:
        staging = self._staged(args[0])
        g = self._group(staging, args[1])
        r = _index(args[2], self.rows, "row")
        c = _index(args[3], self.cols, "col")
        n = _count(args[4])
        staging.counts[g, r, c] = n
        return [B.ok_pulse(staging.batch, g, r, c, n)]

    def _exec(self, args: list[str], tag: str, now: float) -> list[str]:
        staging = self._staged(args[0])
        missing = [k for k, grp in enumerate(staging.groups) if grp is None]
        if missing:
            raise _Refuse(B.E_INCOMPLETE, f"group {missing[0]} has no shape")
        groups = [grp for grp in staging.groups if grp is not None]
        plan = plan_of(self.rows, self.cols, groups, staging.bias)
        run = _Execution(
            staging.batch,
            tag,
            groups,
            staging.bias,
            plan.total_pulses,
            now,
            plan.total_pulses * self.exec_s_per_pulse,
        )
        self._staging = None
        self.safe = False
        if run.duration <= 0.0:
            return self._done(self._finish(run))
        self._running = run
        return []

    def _apply(self, groups: list[StagedGroup], bias: str) -> PulsePlan:
        plan = plan_of(self.rows, self.cols, groups, bias)
        if plan.total_pulses:
            self.array.apply(plan)
        return plan

    def _finish(self, run: _Execution) -> str:
        """A batch that ran to its end: applied, recorded, logged."""
        self._running = None
        try:
            plan = self._apply(run.groups, run.bias)
        except ValueError as exc:  # the array refused the plan: nothing was applied
            self.errors += 1
            return B.error(B.E_RANGE, str(exc)[:80])
        self._record(run.batch, run.pulses, plan)
        return f"{B.R_DONE} {run.batch} {run.pulses + self.glitches.done_pulses_off}"

    def _done(self, reply: str) -> list[str]:
        """The end-of-batch reply as sent: withheld while `glitches.lose_done` says so."""
        if self.glitches.lose_done > 0 and reply.startswith(B.R_DONE):
            self.glitches.lose_done -= 1
            self.lost_done += 1
            return []
        return [reply]

    def _stop(self, now: float, by: str, *, record: bool) -> int:
        """Stop the running batch after the pulses already fired; those reach the array."""
        run = self._running
        assert run is not None
        self._running = None
        per = self.exec_s_per_pulse
        done = min(run.pulses, math.floor((now - run.t0) / per)) if per > 0 else run.pulses
        plan = self._apply(first_pulses(run.groups, done), run.bias)
        self.interrupted.append(Interrupted(run.batch, done, run.pulses, by))
        if record:
            self._record(run.batch, done, plan)
        return done

    def _record(self, batch: int, pulses: int, plan: PulsePlan) -> None:
        self.last_batch, self.last_pulses = batch, pulses
        self.total_pulses += pulses
        self.log.add(AppliedBatch(batch, pulses, plan.digest()))


class _Refuse(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _int(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise _Refuse(B.E_SYNTAX, f"{what} {text[:20]}")
    return int(text)


def _index(text: str, size: int, what: str) -> int:
    value = _int(text, what)
    if value >= size:
        raise _Refuse(B.E_RANGE, f"{what} {value} of {size}")
    return value


def _count(text: str) -> int:
    value = _int(text, "count")
    if value > B.BOARD_MAX_COUNT:
        raise _Refuse(B.E_RANGE, f"count {value}")
    return value


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Refuse(B.E_SYNTAX, f"{what} {text[:20]}") from None
    if not math.isfinite(value):
        raise _Refuse(B.E_RANGE, f"{what} {text[:20]}")
    return value
