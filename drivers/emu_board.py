"""The pulse board's firmware as a pure state machine: one frame in, reply frames out.

No I/O here, so the same core serves the pseudo-terminal emulator, the dry-run writer and
the fuzz tests. A batch is staged (BEGIN, SHAPE, ROW/PULSE) and applied atomically by EXEC
as one pulse plan on the array; the board remembers the last applied batch number across
link resets, refuses a batch number that is not above it, and logs what it applied.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from drivers import board as B
from drivers.emu_array import AppliedBatch, ArrayLog, StagedGroup, plan_of
from protocols.backend import CrossbarBackend

MODEL = "MRNN-PB1"
FIRMWARE = "1.0"


@dataclass
class _Staging:
    batch: int
    bias: str
    groups: list[StagedGroup | None]
    counts: np.ndarray = field(repr=False)


class BoardCore:
    """The board: a simulated array, the staging buffer and the applied-batch log."""

    def __init__(self, array: CrossbarBackend, *, serial: str = "EMU0001") -> None:
        self.array = array
        self.rows, self.cols = array.shape
        self.serial = serial
        self.log = ArrayLog()
        self.last_batch = 0
        self.last_pulses = 0
        self.total_pulses = 0
        self.errors = 0
        self._staging: _Staging | None = None
        self._lock = threading.RLock()

    # -- link ------------------------------------------------------------------------------
    def link_reset(self) -> None:
        """A dropped link: the staging buffer is lost, the applied-batch record is kept."""
        with self._lock:
            self._staging = None

    def handle(self, line: bytes) -> list[bytes]:
        """Reply frames (without LF) for one received line; never raises."""
        with self._lock:
            if len(line) > B.MAX_FRAME:
                return [self._err(B.NO_TAG, B.E_OVERFLOW, f"{len(line)} bytes")]
            try:
                tag, body = B.decode(line)
            except B.FrameError as exc:
                code = B.E_CRC if "checksum" in str(exc) else B.E_SYNTAX
                return [self._err(B.NO_TAG, code, "")]
            try:
                return [B.encode(tag, reply) for reply in self._dispatch(body)]
            except _Refuse as exc:
                return [self._err(tag, exc.code, exc.detail)]

    def _err(self, tag: str, code: int, detail: str) -> bytes:
        self.errors += 1
        return B.encode(tag, B.error(code, detail))

    # -- commands --------------------------------------------------------------------------
    def _dispatch(self, body: str) -> list[str]:
        parts = body.split(" ")
        cmd, args = parts[0], parts[1:]
        if cmd == B.ID and not args:
            return [f"{B.R_ID} {MODEL} {self.serial} {FIRMWARE} {self.rows} {self.cols}"]
        if cmd == B.STAT and not args:
            staged = self._staging.batch if self._staging else 0
            return [f"{B.R_STAT} {self.last_batch} {staged} {self.total_pulses} {self.errors}"]
        if cmd == B.RANGE and not args:
            info = self.array.info()
            return [f"{B.R_RANGE} {B.num(info.g_min_s)} {B.num(info.g_max_s)}"]
        if cmd == B.LAST and not args:
            return [f"{B.R_LAST} {self.last_batch} {self.last_pulses}"]
        if cmd == B.BEGIN and len(args) == 3:
            return self._begin(args)
        if cmd == B.SHAPE and len(args) == 5:
            return self._shape(args)
        if cmd == B.ROW and len(args) == 4:
            return self._row(args)
        if cmd == B.PULSE and len(args) == 5:
            return self._pulse(args)
        if cmd == B.EXEC and len(args) == 1:
            return self._exec(args)
        if cmd == B.READ_ROW and len(args) == 1:
            r = _index(args[0], self.rows, "row")
            values = self.array.read(rows=[r])[0]
            return [B.row_values(r, [float(v) for v in values])]
        if cmd == B.READ_ARRAY and not args:
            g = self.array.read()
            lines = [B.row_values(r, [float(v) for v in g[r]]) for r in range(self.rows)]
            return [*lines, f"{B.R_END} {self.rows}"]
        raise _Refuse(B.E_SYNTAX, cmd[:20])

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
        return [f"{B.R_OK} {B.BEGIN} {batch}"]

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
        return [f"{B.R_OK} {B.SHAPE} {staging.batch} {g}"]

    def _row(self, args: list[str]) -> list[str]:
        staging = self._staged(args[0])
        g = self._group(staging, args[1])
        r = _index(args[2], self.rows, "row")
        fields = args[3].split(",")
        if len(fields) != self.cols:
            raise _Refuse(B.E_SYNTAX, f"{len(fields)} counts for {self.cols} columns")
        counts = [_count(f) for f in fields]
        staging.counts[g, r, :] = counts
        return [f"{B.R_OK} {B.ROW} {staging.batch} {g} {r} {sum(counts)}"]

    def _pulse(self, args: list[str]) -> list[str]:
        staging = self._staged(args[0])
        g = self._group(staging, args[1])
        r = _index(args[2], self.rows, "row")
        c = _index(args[3], self.cols, "col")
        n = _count(args[4])
        staging.counts[g, r, c] = n
        return [f"{B.R_OK} {B.PULSE} {staging.batch} {g} {r} {c} {n}"]

    def _exec(self, args: list[str]) -> list[str]:
        staging = self._staged(args[0])
        missing = [k for k, grp in enumerate(staging.groups) if grp is None]
        if missing:
            raise _Refuse(B.E_INCOMPLETE, f"group {missing[0]} has no shape")
        groups = [grp for grp in staging.groups if grp is not None]
        plan = plan_of(self.rows, self.cols, groups, staging.bias)
        pulses = plan.total_pulses
        if pulses:
            try:
                self.array.apply(plan)
            except ValueError as exc:  # the array refused the plan: nothing was applied
                raise _Refuse(B.E_RANGE, str(exc)[:80]) from None
        self.last_batch, self.last_pulses = staging.batch, pulses
        self.total_pulses += pulses
        self._staging = None
        self.log.add(AppliedBatch(staging.batch, pulses, plan.digest()))
        return [f"{B.R_DONE} {staging.batch} {pulses}"]


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
