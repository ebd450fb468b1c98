"""The VISA station as state machines: a B2900 SMU in pulse mode and a 707B switch matrix.

The cores share a `Station`: the simulated array, which crosspoints are closed, which
source drives which matrix row, and an ordered record of what happened (outputs on and
off, relays switched, relays switched while a source was live). A train fired by `:INIT`
runs in real time: its pulses reach whichever devices the matrix connects while they
happen, so relays that switch mid-train move the rest of the train to another device, as
they would on the bench. Pulses are logged at once (the emulator's own record) and reach
the array as one pulse plan when the driver next looks (a measurement or the error
queue), so a batch delivered device by device lands on the array exactly as the same plan
would on the simulator.

Each core models the instrument behaviours the driver must cope with, from the manuals
and public drivers cited in docs/instruments.md §8: `*OPC?` answering before a train has
ended, a trigger that arrives while the previous pulse cycle is running being lost, an
unknown start state left by a previous user, a current-compliance hit, an upper-case
identity, a refused relay close that changes nothing, fewer cards than slots, TSP prompts
and a stale error queue.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivers import scpi as S
from drivers.emu_array import StagedGroup, plan_of
from protocols.backend import CrossbarBackend

SMU_IDN = "Keysight Technologies,B2901A,EMU0001,mrnn-hil-emulator-1.0"
MATRIX_IDN = "KEITHLEY INSTRUMENTS INC.,MODEL 707B,EMU0002,01.10h-emulator"
CARD_7174A = "7174A,8x12 Low Current Matrix,01.00a,EMU00001"
MAX_LINE = 65536
QUEUE_DEPTH = 10
#: SCPI-99 'not a number', the reading of a measurement beyond its range.
OVER_RANGE = 9.91e37


@dataclass(frozen=True)
class Train:
    """One entry of the emulator's pulse log: pulses and the device they reached."""

    epoch: int
    row: int
    col: int
    amplitude_v: float
    width_s: float
    count: int


@dataclass(frozen=True)
class Event:
    """One entry of the station's record: who did what, when (monotonic seconds)."""

    t: float
    who: str
    what: str


@dataclass
class RunningTrain:
    """A pulse train in progress: `n` pulses, one every `step` seconds from `t0`."""

    t0: float
    step: float
    n: int
    amplitude_v: float
    width_s: float
    epoch: int
    row: str
    busy_until: float
    done: int = 0
    #: Whether the pulses reach the terminals now (the source's output is on).
    gate: Callable[[], bool] | None = None

    def due(self, now: float) -> int:
        if self.step <= 0.0:
            return self.n
        if now < self.t0:
            return 0
        return min(self.n, math.floor((now - self.t0) / self.step) + 1)

    def running(self, now: float) -> bool:
        return now < self.busy_until or self.done < self.n


class Station:
    """The array, the matrix state, the sources on the matrix rows, and their record."""

    def __init__(self, array: CrossbarBackend, *, min_width_s: float = S.SMU_MIN_WIDTH_S) -> None:
        self.array = array
        self.rows, self.cols = array.shape
        self.map = S.MatrixMap(self.rows, self.cols)
        self.min_width_s = min_width_s
        self.closed: set[str] = set()
        self.lock = threading.RLock()
        self.log: list[Train] = []
        self.events: list[Event] = []
        self.trains: list[RunningTrain] = []
        self._live: dict[str, Callable[[float], bool]] = {}
        self._pending: list[StagedGroup] = []

    # -- record ----------------------------------------------------------------------------
    def record(self, who: str, what: str) -> None:
        self.events.append(Event(time.monotonic(), who, what))

    @property
    def hot_switches(self) -> list[Event]:
        """Relay changes made while a source on an affected row was live."""
        return [e for e in self.events if e.what.startswith("hot switch")]

    def attach(self, matrix_row: str, live: Callable[[float], bool]) -> None:
        """A source on `matrix_row`; `live(now)` says whether it drives a voltage now."""
        self._live[matrix_row] = live

    # -- matrix ----------------------------------------------------------------------------
    def connected(self, matrix_row: str = S.MATRIX_ROW_SOURCE) -> list[tuple[int, int]]:
        """Devices between a word line on `matrix_row` and a grounded bit line."""
        src, gnd = [], []
        for ch in self.closed:
            row, line = self.map.line_of(ch)
            if row == matrix_row and line < self.rows:
                src.append(line)
            elif row == S.MATRIX_ROW_GROUND and self.rows <= line < self.map.lines:
                gnd.append(line - self.rows)
        return [(r, c) for r in sorted(src) for c in sorted(gnd)]

    def set_closed(self, closed: set[str]) -> None:
        """Switch relays; a change under a live source is recorded as a hot switch."""
        now = time.monotonic()
        self.advance(now)
        for matrix_row, live in self._live.items():
            before = self.connected(matrix_row)
            if live(now) and before:
                after_closed, self.closed = self.closed, closed
                after = self.connected(matrix_row)
                self.closed = after_closed
                if after != before:
                    self.record("matrix", f"hot switch on row {matrix_row}: {before} -> {after}")
        self.closed = closed

    # -- pulses ----------------------------------------------------------------------------
    def start(self, train: RunningTrain) -> None:
        self.trains.append(train)
        self.advance(time.monotonic())

    def advance(self, now: float) -> None:
        """Deliver the pulses of running trains that are due, to the devices connected now."""
        for train in self.trains:
            due = train.due(now)
            if due > train.done:
                if train.gate is None or train.gate():
                    self.pulse(
                        train.epoch, train.amplitude_v, train.width_s, due - train.done, train.row
                    )
                train.done = due
        self.trains = [t for t in self.trains if t.running(now)]

    def pulse(
        self, epoch: int, amp: float, width: float, count: int, matrix_row: str = "A"
    ) -> None:
        for r, c in self.connected(matrix_row):
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
            self.advance(time.monotonic())
            if self._pending:
                plan = plan_of(self.rows, self.cols, self._pending, "none")
                self._pending = []
                self.array.apply(plan)

    def current(self, matrix_row: str, volts: float) -> float:
        """The current a source at `volts` on `matrix_row` drives through what is connected."""
        self.flush()
        total = 0.0
        for r, c in self.connected(matrix_row):
            g = float(self.array.read(rows=[r], cols=[c])[0, 0])
            total += g * volts
        return total


def _program_message(
    line: bytes,
    unit: Callable[[str], str | None],
    push: Callable[[tuple[int, str]], None],
    overrun: tuple[int, str],
    undecodable: tuple[int, str],
    separator: str | None = ";",
) -> list[str]:
    """Execute the units of one program message; their query replies.

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
    parts = text.strip().split(separator) if separator else [text.strip()]
    for part in parts:
        part = part.strip()
        if not part:
            continue
        try:
            reply = unit(part)
        except ScpiError as err:
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


@dataclass
class SmuBehaviour:
    """How the emulated B2900 behaves beyond the grammar.

    `history` is what a previous session sent before ours (the state a real instrument is
    found in); `errors_on` pushes an error whenever a header executes; `realtime=False`
    runs trains instantly (the dry run's in-process firmware); `opc_waits=True` is an
    idealised SMU whose `*OPC?` waits for the end of a train, unlike a real B2900.
    """

    idn: str = SMU_IDN
    realtime: bool = True
    opc_waits: bool = False
    #: Time each triggered pulse costs beyond what the settings account for (firmware).
    overhead_s: float = 0.0
    history: list[str] = field(default_factory=list)
    errors_on: dict[str, tuple[int, str]] = field(default_factory=dict)


class SmuCore:
    """B2900 SMU, channel 1: one program message in, reply lines out."""

    #: Reset values of what the driver sets explicitly; the emulator's placeholders (the
    #: driver sets every one at start-up, so their exact values never matter to it).
    RESET_APERTURE_S = 1e-3
    RESET_AUTO_WAIT_S = 1e-4

    def __init__(self, station: Station, behaviour: SmuBehaviour | None = None) -> None:
        self.station = station
        self.behaviour = behaviour or SmuBehaviour()
        self.errors = _Queue()
        self.epoch = 0
        self.trace_committed = 0
        self.train: RunningTrain | None = None
        self.counting = False
        self._reset()
        station.attach(S.MATRIX_ROW_SOURCE, self.live)
        for line in self.behaviour.history:
            self.handle(line.encode("ascii"))

    def _reset(self) -> None:
        self.output = False
        self.mode = "VOLT"
        self.volt_mode = "FIX"
        self.list_v: list[float] = []
        self.shape = S.SHAPE_DC
        self.base_v = 0.0
        self.peak_v = 0.0
        self.source_range_v: float | None = None
        self.width_s = 1e-3
        self.delay_s = 0.0
        self.compliance_a = 1e-4
        self.range_auto = True
        self.range_a = 1e-4
        self.aperture_s = self.RESET_APERTURE_S
        self.source_wait_auto = True
        self.source_wait = [1.0, 0.0]  # gain, offset
        self.measure_wait_auto = True
        self.measure_wait = [1.0, 0.0]
        self.trig_source = "AINT"
        self.period_s = 1e-3
        self.trig_count = 1
        self.feed = False
        self.tripped = False

    # -- state -------------------------------------------------------------------------------
    def live(self, now: float) -> bool:
        """Drives a voltage: output on and a non-zero level, or a train running."""
        running = self.train is not None and self.train.running(now)
        return self.output and (self.base_v != 0.0 or running)

    def idle(self, now: float) -> bool:
        return self.train is None or not self.train.running(now)

    @property
    def trace(self) -> int:
        """Readings in the buffer: one per pulse delivered while writing was on (NEXT)."""
        done = self.train.done if self.train is not None and self.counting else 0
        return min(S.SMU_TRACE_CAPACITY, self.trace_committed + done)

    def _wait(self, auto: bool, gain_offset: list[float]) -> float:
        base = self.RESET_AUTO_WAIT_S if auto else 0.0
        return gain_offset[0] * base + gain_offset[1] if auto else gain_offset[1]

    def cycle_s(self) -> float:
        """How long one triggered pulse keeps the channel busy."""
        return (
            self.delay_s
            + self.width_s
            + self._wait(self.source_wait_auto, self.source_wait)
            + self._wait(self.measure_wait_auto, self.measure_wait)
            + self.aperture_s
            + self.behaviour.overhead_s
        )

    # -- messages ---------------------------------------------------------------------------
    def handle(self, line: bytes) -> list[str]:
        """One reply line for a program message: its query replies joined by ';'."""
        with self.station.lock:
            replies = _program_message(
                line, self._unit, self.errors.push, S.ERR_INPUT_OVERRUN, S.ERR_UNDEFINED_HEADER
            )
        if self.behaviour.opc_waits and replies:
            with self.station.lock:
                end = self.train.busy_until if self.train is not None else 0.0
            time.sleep(max(0.0, end - time.monotonic()))
        return [";".join(replies)] if replies else []

    def _unit(self, unit: str) -> str | None:
        head, _, arg = unit.partition(" ")
        head = head.upper()
        arg = arg.strip()
        reply = self._execute(head, arg)
        if head in self.behaviour.errors_on:
            self.errors.push(self.behaviour.errors_on[head])
        return reply

    def _execute(self, head: str, arg: str) -> str | None:
        now = time.monotonic()
        self.station.advance(now)
        if head == S.IDN and not arg:
            return self.behaviour.idn
        if head == S.OPC and not arg:
            return "1"
        if head == S.CLS and not arg:
            self.errors.items.clear()
            return None
        if head == S.RST and not arg:
            self._abort(now)
            self._reset()
            self.station.record("smu", "reset (output off)")
            return None
        if head == S.SYST_ERR and not arg:
            self.station.flush()
            err = self.errors.pop() or (0, "No error")
            return S.format_error(*err)
        if head == S.TRAC_POIN_ACT and not arg:
            return str(self.trace)
        if head == S.IDLE_ALL and not arg:
            return "1" if self.idle(now) else "0"
        if head == S.TRAC_CLE and not arg:
            if self.feed:  # the buffer is cleared only while writing is stopped (NEV)
                raise ScpiError(S.ERR_SETTINGS_CONFLICT)
            if not self.idle(now):
                raise ScpiError(S.ERR_SETTINGS_CONFLICT)
            self.train = None
            self.trace_committed = 0
            self.epoch += 1
            return None
        if head in S.OUTP_QUERIES and not arg:
            return "1" if self.output else "0"
        if head == S.SOUR_VOLT_QUERY and not arg:
            return f"{self.base_v:+.6E}"
        if head == S.MEAS_CURR and arg == S.CHANNEL_LIST:
            return self._measure()
        if head == S.SENS_CURR_TRIP and not arg:
            return "1" if self.tripped else "0"
        if head == S.INIT and arg == S.CHANNEL_LIST:
            self._init(now)
            return None
        if head == S.ABOR_ALL and arg == S.CHANNEL_LIST:
            self._abort(now)
            self.station.record("smu", "abort")
            return None
        self._setting(head, arg)
        return None

    def _setting(self, head: str, arg: str) -> None:
        if head == S.SOUR_FUNC_MODE and arg in ("VOLT", "CURR"):
            self.mode = arg
        elif head == S.SOUR_VOLT_MODE and arg in ("FIX", "LIST", "SWE"):
            self.volt_mode = arg
        elif head == S.SOUR_LIST_VOLT:
            self.list_v = [_volts(v) for v in arg.split(",")]
        elif head == S.SOUR_VOLT_RANG:
            self.source_range_v = _ranged(arg, 0.2, 210.0)
        elif head == S.SOUR_FUNC_SHAP and arg in (S.SHAPE_PULSE, S.SHAPE_DC):
            self.shape = arg
        elif head == S.SOUR_VOLT:
            self.base_v = _volts(arg)
            self.station.record("smu", f"level {self.base_v!r} V")
        elif head == S.SOUR_VOLT_TRIG:
            self.peak_v = _volts(arg)
        elif head == S.SOUR_PULS_WIDT:
            self.width_s = _ranged(arg, self.station.min_width_s, S.SMU_MAX_WIDTH_S)
        elif head == S.SOUR_PULS_DEL:
            self.delay_s = _ranged(arg, 0.0, 99_999.9)
        elif head == S.SENS_FUNC and arg.strip('"') in ("CURR", "VOLT"):
            pass
        elif head == S.SENS_CURR_RANG_AUTO and arg in ("ON", "OFF", "1", "0"):
            self.range_auto = arg in ("ON", "1")
        elif head == S.SENS_CURR_RANG:
            self.range_a = _ranged(arg, 1e-8, 10.0)
        elif head == S.SENS_CURR_APER:
            self.aperture_s = _ranged(arg, 8e-6, 2.0)
        elif head == S.SENS_CURR_PROT:
            self.compliance_a = _ranged(arg, S.SMU_MIN_COMPLIANCE_A, S.SMU_MAX_COMPLIANCE_A)
        elif head in (S.SOUR_WAIT_AUTO, S.SENS_WAIT_AUTO) and arg in ("ON", "OFF", "1", "0"):
            if head == S.SOUR_WAIT_AUTO:
                self.source_wait_auto = arg in ("ON", "1")
            else:
                self.measure_wait_auto = arg in ("ON", "1")
        elif head in (S.SOUR_WAIT_GAIN, S.SENS_WAIT_GAIN):
            wait = self.source_wait if head == S.SOUR_WAIT_GAIN else self.measure_wait
            wait[0] = _ranged(arg, 0.0, 100.0)
        elif head in (S.SOUR_WAIT_OFFS, S.SENS_WAIT_OFFS):
            wait = self.source_wait if head == S.SOUR_WAIT_OFFS else self.measure_wait
            wait[1] = _ranged(arg, 0.0, 1.0)
        elif head == S.TRIG_SOUR and arg in ("TIM", "AINT", "BUS"):
            self.trig_source = arg
        elif head == S.TRIG_TIM:
            self.period_s = _ranged(arg, S.SMU_MIN_TIMER_S, S.SMU_MAX_TIMER_S)
        elif head == S.TRIG_COUN:
            self.trig_count = int(_ranged(arg, 1, S.SMU_TRACE_CAPACITY, integer=True))
        elif head == S.TRAC_FEED_CONT and arg in ("NEXT", "NEV"):
            self.feed = arg == "NEXT"
        elif head == S.OUTP and arg in ("ON", "OFF", "1", "0"):
            on = arg in ("ON", "1")
            if on != self.output:
                self.station.record("smu", "output on" if on else "output off")
            self.output = on  # a running train goes on (unseen) until it is aborted
        elif head in _KNOWN_SETTINGS:
            raise ScpiError(S.ERR_DATA_TYPE)
        else:
            raise ScpiError(S.ERR_UNDEFINED_HEADER)

    def _init(self, now: float) -> None:
        if not self.output or self.shape != S.SHAPE_PULSE or self.mode != "VOLT":
            raise ScpiError(S.ERR_SETTINGS_CONFLICT)
        if self.width_s >= self.period_s or not self.idle(now):
            raise ScpiError(S.ERR_SETTINGS_CONFLICT)
        n = self.trig_count
        # a trigger that arrives while the previous cycle runs is not acted on
        cycle = self.cycle_s()
        every = max(1, math.ceil(cycle / self.period_s - 1e-9))
        accepted = math.ceil(n / every)
        room = S.SMU_TRACE_CAPACITY - self.trace if self.feed else 0
        peak = self.list_v[0] if self.volt_mode == "LIST" and self.list_v else self.peak_v
        if self.train is not None:
            self.trace_committed = self.trace
        self.counting = self.feed
        step = every * self.period_s if self.behaviour.realtime else 0.0
        busy = (n - 1) * self.period_s + cycle if self.behaviour.realtime else 0.0
        self.train = RunningTrain(
            t0=now,
            step=step,
            n=accepted,
            amplitude_v=peak - self.base_v,
            width_s=self.width_s,
            epoch=self.epoch,
            row=S.MATRIX_ROW_SOURCE,
            busy_until=now + busy,
            gate=lambda: self.output,
        )
        if self.feed and accepted >= room:
            self.feed = False  # a full buffer falls back to NEV
        if peak != self.base_v:
            self.station.start(self.train)
        else:  # a train at the base level reaches no device
            self.train.n = self.train.done = accepted

    def _abort(self, now: float) -> None:
        """Stop a running train: pulses not yet due are never delivered."""
        if self.train is not None:
            self.station.advance(now)
            self.train.n = self.train.done
            self.train.busy_until = now
            self.station.trains = [t for t in self.station.trains if t is not self.train]

    def _measure(self) -> str:
        if not self.output or self.shape != S.SHAPE_DC:
            raise ScpiError(S.ERR_SETTINGS_CONFLICT)
        current = self.station.current(S.MATRIX_ROW_SOURCE, self.base_v)
        self.tripped = abs(current) > self.compliance_a
        if self.tripped:
            current = math.copysign(self.compliance_a, current)
        if not self.range_auto and abs(current) > self.range_a * 1.05:
            return S.num(OVER_RANGE)
        return S.num(current)


_KNOWN_SETTINGS = {
    S.SOUR_FUNC_MODE,
    S.SOUR_VOLT_MODE,
    S.SOUR_FUNC_SHAP,
    S.SENS_FUNC,
    S.SENS_CURR_RANG_AUTO,
    S.SOUR_WAIT_AUTO,
    S.SENS_WAIT_AUTO,
    S.TRIG_SOUR,
    S.TRAC_FEED_CONT,
    S.OUTP,
}


@dataclass
class MatrixBehaviour:
    """How the emulated 707B behaves: its identity, its cards (`slot[n].idn` replies; an
    empty slot is 'Empty Slot'), channels `channel.setforbidden` left forbidden, and the
    prompt, error-echo and error-queue state a previous session left behind."""

    idn: str = MATRIX_IDN
    cards: list[str] = field(default_factory=lambda: [CARD_7174A] * S.MATRIX_SLOTS)
    forbidden: set[str] = field(default_factory=set)
    prompts: bool = False
    showerrors: bool = False
    stale_errors: list[tuple[int, str]] = field(default_factory=list)


class MatrixCore:
    """707B switch matrix (TSP commands)."""

    def __init__(self, station: Station, behaviour: MatrixBehaviour | None = None) -> None:
        self.station = station
        self.behaviour = behaviour or MatrixBehaviour()
        self.errors: list[tuple[int, str]] = list(self.behaviour.stale_errors)
        self.prompts = self.behaviour.prompts
        self.showerrors = self.behaviour.showerrors

    def handle(self, line: bytes) -> list[str]:
        """Reply lines of one TSP command line (prompts and echoed errors included)."""
        with self.station.lock:
            replies = _program_message(
                line, self._unit, self._push, S.MATRIX_ERR_SYNTAX, S.MATRIX_ERR_SYNTAX, None
            )
            if self.showerrors and self.errors:
                replies += [S.matrix_error_reply(*e) for e in self.errors]
                self.errors.clear()
            if self.prompts:
                replies.append(S.TSP_PROMPTS[0])
            return replies

    def _push(self, err: tuple[int, str]) -> None:
        if len(self.errors) < QUEUE_DEPTH:
            self.errors.append(err)

    def _unit(self, unit: str) -> str | None:
        if unit.upper() == S.IDN:
            return self.behaviour.idn
        if unit == S.OPC:
            return "1"
        if unit == S.MATRIX_OPEN_ALL:
            self.station.set_closed(set())
            self.station.record("matrix", "open all")
            return None
        if unit == S.MATRIX_GETCLOSE:
            if not self.station.closed:
                return S.MATRIX_NOTHING_CLOSED
            return ";".join(sorted(self.station.closed))
        if unit == S.MATRIX_ERR_COUNT:
            return S.tsp_number(len(self.errors))
        if unit == S.MATRIX_ERR_NEXT:
            err = self.errors.pop(0) if self.errors else S.MATRIX_QUEUE_EMPTY
            return S.matrix_error_reply(*err)
        if unit == S.MATRIX_ERR_CLEAR:
            self.errors.clear()
            return None
        m = S.TSP_ASSIGN_RE.match(unit)
        if m:
            setattr(self, m.group(1), m.group(2) == "1")
            return None
        m = S.SLOT_IDN_RE.match(unit)
        if m:
            slot = int(m.group(1))
            cards = self.behaviour.cards
            return cards[slot - 1] if 1 <= slot <= len(cards) else "nil"
        m = S.EXCLUSIVECLOSE_RE.match(unit)
        if m:
            channels = self._channels(m.group(1))  # a refused close changes nothing
            self.station.set_closed(channels)
            self.station.record("matrix", f"close {','.join(sorted(channels))}")
            return None
        m = S.OPEN_RE.match(unit)
        if m:
            self.station.set_closed(self.station.closed - self._channels(m.group(1)))
            return None
        raise ScpiError(S.MATRIX_ERR_SYNTAX)

    def _channels(self, text: str) -> set[str]:
        chans = {c.strip() for c in text.split(",") if c.strip()}
        if not chans:
            raise ScpiError(S.MATRIX_ERR_CHANNEL)
        for ch in chans:
            try:
                self.station.map.line_of(ch)
            except ValueError:
                raise ScpiError(S.MATRIX_ERR_CHANNEL) from None
            slot, row, col = int(ch[0]), ch[1], int(ch[2:])
            cards = self.behaviour.cards
            size = S.card_size(cards[slot - 1]) if slot <= len(cards) else None
            if size is None or ord(row) - ord("A") >= size[0] or col > size[1]:
                raise ScpiError(S.MATRIX_ERR_CHANNEL)
            if ch in self.behaviour.forbidden:
                self.station.record("matrix", f"refused close of forbidden {ch}")
                raise ScpiError(S.MATRIX_ERR_CHANNEL)
        return chans


class ScpiError(Exception):
    def __init__(self, error: tuple[int, str]) -> None:
        super().__init__(error[1])
        self.error = error


def _number(arg: str) -> float:
    try:
        value = S.parse_float(arg)
    except ValueError:
        raise ScpiError(S.ERR_DATA_TYPE) from None
    return value


def _ranged(arg: str, lo: float, hi: float, *, integer: bool = False) -> float:
    value = _number(arg)
    if integer and value != int(value):
        raise ScpiError(S.ERR_DATA_TYPE)
    if not lo <= value <= hi:
        raise ScpiError(S.ERR_OUT_OF_RANGE)
    return value


def _volts(arg: str) -> float:
    return _ranged(arg, -S.SMU_MAX_ABS_V, S.SMU_MAX_ABS_V)
