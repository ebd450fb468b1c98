"""The VISA station as pure state machines: an SMU in pulse mode and a switch matrix.

Both cores share a `Station` (the simulated array and which crosspoints are closed). A
train fired by `:INIT` hits the devices the matrix connects; its pulses are logged at once
(the emulator's own record) and reach the array as one pulse plan when the driver next
looks (a measurement or the error queue), so a batch delivered device by device lands on
the array exactly as the same plan would on the simulator.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from drivers import scpi as S
from drivers.emu_array import StagedGroup, plan_of
from protocols.backend import CrossbarBackend

SMU_IDN = "Keysight Technologies,B2901A,EMU0001,mrnn-hil-emulator-1.0"
MATRIX_IDN = "Keithley Instruments Inc.,Model 707B,EMU0002,mrnn-hil-emulator-1.0"
MAX_LINE = 65536
QUEUE_DEPTH = 10


@dataclass(frozen=True)
class Train:
    """One entry of the SMU emulator's log: a pulse train and where it went."""

    epoch: int
    row: int
    col: int
    amplitude_v: float
    width_s: float
    count: int


class Station:
    """The array, the matrix state and the pulses not yet handed to the array."""

    def __init__(self, array: CrossbarBackend, *, min_width_s: float = S.SMU_MIN_WIDTH_S) -> None:
        self.array = array
        self.rows, self.cols = array.shape
        self.map = S.MatrixMap(self.rows, self.cols)
        self.min_width_s = min_width_s
        self.closed: set[str] = set()
        self.lock = threading.RLock()
        self.log: list[Train] = []
        self._pending: list[StagedGroup] = []

    def connected(self) -> list[tuple[int, int]]:
        """Devices between a source-connected word line and a grounded bit line."""
        src, gnd = [], []
        for ch in self.closed:
            row, line = self.map.line_of(ch)
            if row == S.MATRIX_ROW_SOURCE and line < self.rows:
                src.append(line)
            elif row == S.MATRIX_ROW_GROUND and self.rows <= line < self.map.lines:
                gnd.append(line - self.rows)
        return [(r, c) for r in sorted(src) for c in sorted(gnd)]

    def pulse(self, epoch: int, amp: float, width: float, count: int) -> None:
        for r, c in self.connected():
            self.log.append(Train(epoch, r, c, amp, width, count))
            if not self._pending or (
                self._pending[-1].amplitude_v,
                self._pending[-1].width_s,
            ) != (amp, width):
                zeros = np.zeros((self.rows, self.cols), dtype=np.int64)
                self._pending.append(StagedGroup(amp, width, False, zeros))
            self._pending[-1].counts[r, c] += count

    def flush(self) -> None:
        """Hand the pending pulses to the array as one plan."""
        with self.lock:
            if self._pending:
                plan = plan_of(self.rows, self.cols, self._pending, "none")
                self._pending = []
                self.array.apply(plan)


def _program_message(
    line: bytes,
    unit: Callable[[str], str | None],
    push: Callable[[tuple[int, str]], None],
    overrun: tuple[int, str],
    undecodable: tuple[int, str],
) -> list[str]:
    """Execute the ';'-separated units of one program message; their query replies.

    An over-long or non-ASCII line pushes an error and does nothing; a unit that fails
    pushes its error and the rest of the message is not executed, as on the instruments.
    """
    if len(line) > MAX_LINE:
        push(overrun)
        return []
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        push(undecodable)
        return []
    replies: list[str] = []
    for part in text.strip().split(";"):
        part = part.strip()
        if not part:
            continue
        try:
            reply = unit(part)
        except _ScpiError as err:
            push(err.error)
            break
        if reply is not None:
            replies.append(reply)
    return replies


class _Queue:
    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []

    def push(self, err: tuple[int, str]) -> None:
        if len(self.items) >= QUEUE_DEPTH:
            self.items[-1] = S.ERR_QUEUE_OVERFLOW
        else:
            self.items.append(err)

    def pop(self) -> tuple[int, str] | None:
        return self.items.pop(0) if self.items else None


class SmuCore:
    """B2900-style SMU, channel 1: one program message in, reply lines out."""

    def __init__(self, station: Station) -> None:
        self.station = station
        self.errors = _Queue()
        self.epoch = 0
        self._reset()

    def _reset(self) -> None:
        self.output = False
        self.mode = "VOLT"
        self.shape = S.SHAPE_DC
        self.base_v = 0.0
        self.peak_v = 0.0
        self.width_s = 1e-3
        self.delay_s = 0.0
        self.compliance_a = 1e-4
        self.trig_source = "AINT"
        self.period_s = 1e-3
        self.trig_count = 1
        self.trace = 0
        self.feed = False

    def handle(self, line: bytes) -> list[str]:
        """One reply line for a program message: its query replies joined by ';'."""
        with self.station.lock:
            replies = _program_message(
                line, self._unit, self.errors.push, S.ERR_INPUT_OVERRUN, S.ERR_UNDEFINED_HEADER
            )
            return [";".join(replies)] if replies else []

    def _unit(self, unit: str) -> str | None:
        head, _, arg = unit.partition(" ")
        head = head.upper()
        arg = arg.strip()
        if head == S.IDN and not arg:
            return SMU_IDN
        if head == S.OPC and not arg:
            return "1"
        if head == S.CLS and not arg:
            self.errors.items.clear()
            return None
        if head == S.RST and not arg:
            self._reset()
            return None
        if head == S.SYST_ERR and not arg:
            self.station.flush()
            err = self.errors.pop() or (0, "No error")
            return S.format_error(*err)
        if head == S.TRAC_POIN_ACT and not arg:
            return str(self.trace)
        if head == S.TRAC_CLE and not arg:
            if self.feed:  # the buffer is cleared only while writing is stopped (NEV)
                raise _ScpiError(S.ERR_SETTINGS_CONFLICT)
            self.trace = 0
            self.epoch += 1
            return None
        if head in S.OUTP_QUERIES and not arg:
            return "1" if self.output else "0"
        if head == S.SOUR_VOLT_QUERY and not arg:
            return f"{self.base_v:+.6E}"
        if head == S.MEAS_CURR and arg == S.CHANNEL_LIST:
            return self._measure()
        if head == S.INIT and arg == S.CHANNEL_LIST:
            self._init()
            return None
        self._setting(head, arg)
        return None

    def _setting(self, head: str, arg: str) -> None:
        if head == S.SOUR_FUNC_MODE and arg in ("VOLT", "CURR"):
            self.mode = arg
        elif head == S.SOUR_FUNC_SHAP and arg in (S.SHAPE_PULSE, S.SHAPE_DC):
            self.shape = arg
        elif head == S.SOUR_VOLT:
            self.base_v = _volts(arg)
        elif head == S.SOUR_VOLT_TRIG:
            self.peak_v = _volts(arg)
        elif head == S.SOUR_PULS_WIDT:
            self.width_s = _ranged(arg, self.station.min_width_s, S.SMU_MAX_WIDTH_S)
        elif head == S.SOUR_PULS_DEL:
            self.delay_s = _ranged(arg, 0.0, 100.0)
        elif head == S.SENS_CURR_PROT:
            self.compliance_a = _ranged(arg, S.SMU_MIN_COMPLIANCE_A, S.SMU_MAX_COMPLIANCE_A)
        elif head == S.TRIG_SOUR and arg in ("TIM", "AINT", "BUS"):
            self.trig_source = arg
        elif head == S.TRIG_TIM:
            self.period_s = _ranged(arg, 1e-5, 1e5)
        elif head == S.TRIG_COUN:
            self.trig_count = int(_ranged(arg, 1, S.SMU_TRACE_CAPACITY, integer=True))
        elif head == S.TRAC_FEED_CONT and arg in ("NEXT", "NEV"):
            self.feed = arg == "NEXT"
        elif head == S.OUTP and arg in ("ON", "OFF", "1", "0"):
            self.output = arg in ("ON", "1")
        elif head in _KNOWN_SETTINGS:
            raise _ScpiError(S.ERR_DATA_TYPE)
        else:
            raise _ScpiError(S.ERR_UNDEFINED_HEADER)

    def _init(self) -> None:
        if not self.output or self.shape != S.SHAPE_PULSE or self.mode != "VOLT":
            raise _ScpiError(S.ERR_SETTINGS_CONFLICT)
        if self.width_s >= self.period_s:
            raise _ScpiError(S.ERR_SETTINGS_CONFLICT)
        n = self.trig_count
        if self.feed:
            n_stored = min(n, S.SMU_TRACE_CAPACITY - self.trace)
            self.trace += n_stored
            if self.trace >= S.SMU_TRACE_CAPACITY:
                self.feed = False  # a full buffer falls back to NEV
        if self.peak_v != self.base_v:
            self.station.pulse(self.epoch, self.peak_v - self.base_v, self.width_s, n)

    def _measure(self) -> str:
        if not self.output or self.shape != S.SHAPE_DC:
            raise _ScpiError(S.ERR_SETTINGS_CONFLICT)
        self.station.flush()
        devices = self.station.connected()
        current = 0.0
        for r, c in devices:
            g = float(self.station.array.read(rows=[r], cols=[c])[0, 0])
            current += g * self.base_v
        if abs(current) > self.compliance_a:
            current = math.copysign(self.compliance_a, current)
        return S.num(current)


_KNOWN_SETTINGS = {
    S.SOUR_FUNC_MODE,
    S.SOUR_FUNC_SHAP,
    S.TRIG_SOUR,
    S.TRAC_FEED_CONT,
    S.OUTP,
}


class MatrixCore:
    """707B-style switch matrix (TSP commands)."""

    def __init__(self, station: Station) -> None:
        self.station = station
        self.errors: list[tuple[int, str]] = []

    def handle(self, line: bytes) -> list[str]:
        """One reply line per query of the message (TSP prints each on its own line)."""
        with self.station.lock:
            return _program_message(
                line, self._unit, self._push, S.MATRIX_ERR_SYNTAX, S.MATRIX_ERR_SYNTAX
            )

    def _push(self, err: tuple[int, str]) -> None:
        if len(self.errors) < QUEUE_DEPTH:
            self.errors.append(err)

    def _unit(self, unit: str) -> str | None:
        if unit == S.IDN:
            return MATRIX_IDN
        if unit == S.OPC:
            return "1"
        if unit == S.MATRIX_OPEN_ALL:
            self.station.closed.clear()
            return None
        if unit == S.MATRIX_GETCLOSE:
            if not self.station.closed:
                return S.MATRIX_NOTHING_CLOSED
            return ";".join(sorted(self.station.closed))
        if unit == S.MATRIX_ERR_COUNT:
            return str(len(self.errors))
        if unit == S.MATRIX_ERR_NEXT:
            err = self.errors.pop(0) if self.errors else S.MATRIX_QUEUE_EMPTY
            return S.matrix_error_reply(*err)
        if unit == S.MATRIX_ERR_CLEAR:
            self.errors.clear()
            return None
        m = S.EXCLUSIVECLOSE_RE.match(unit)
        if m:
            self.station.closed = self._channels(m.group(1))
            return None
        m = S.OPEN_RE.match(unit)
        if m:
            self.station.closed -= self._channels(m.group(1))
            return None
        raise _ScpiError(S.MATRIX_ERR_SYNTAX)

    def _channels(self, text: str) -> set[str]:
        chans = {c.strip() for c in text.split(",") if c.strip()}
        if not chans:
            raise _ScpiError(S.MATRIX_ERR_CHANNEL)
        for ch in chans:
            try:
                self.station.map.line_of(ch)
            except ValueError:
                raise _ScpiError(S.MATRIX_ERR_CHANNEL) from None
        return chans


class _ScpiError(Exception):
    def __init__(self, error: tuple[int, str]) -> None:
        super().__init__(error[1])
        self.error = error


def _number(arg: str) -> float:
    try:
        value = S.parse_float(arg)
    except ValueError:
        raise _ScpiError(S.ERR_DATA_TYPE) from None
    return value


def _ranged(arg: str, lo: float, hi: float, *, integer: bool = False) -> float:
    value = _number(arg)
    if integer and value != int(value):
        raise _ScpiError(S.ERR_DATA_TYPE)
    if not lo <= value <= hi:
        raise _ScpiError(S.ERR_OUT_OF_RANGE)
    return value


def _volts(arg: str) -> float:
    return _ranged(arg, -S.SMU_MAX_ABS_V, S.SMU_MAX_ABS_V)
