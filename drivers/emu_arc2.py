"""An in-process stand-in for `pyarc2` (the ArC TWO's Python API), backed by a simulated array.

pyarc2 cannot open an instrument without the board (`Instrument` enumerates the USB device
first), so the ArC TWO backend is exercised, and dry-run, against this double. It offers the
names the backend uses, with the signatures of pyarc2 0.6.0 (tests/test_arc2_pyarc2_api.py
checks them against the real package, so the two cannot drift apart), and models what the
public sources say the board does:

- 64 channels: 0-15 and 32-47 are bit lines (rows), 16-31 and 48-63 word lines (columns) of
  a 32 x 32 array (pyarc2 docs/overview.rst; libarc2 `ALL_BITS`, `ALL_WORDS`);
- `pulse_one(low, high, V, nanos)` puts -V/2 on `low` and +V/2 on `high`; unselected lines
  stay at 0 V, so the devices sharing a line with a pulsed one see V/2 (libarc2
  `setup_dacs_2t_pulsing`). A device sees word line minus bit line: +V with the bit line as
  `low`, -V the other way round;
- `pulse_slice_masked(chan, V, nanos, mask)` pulses, at once, every device between the low
  channel `chan` and the high channels in `mask`;
- widths: 1-40 ns are clamped to 40 ns, timing is in 10 ns steps (truncated here), and pulses
  of 500 ms or more take the slow DAC path, which holds them 30 us longer (libarc2
  `pulse_one`, `pulse_slice_fast_open`, `pulse_one_slow`);
- pulses are queued until `execute()`; reads run at once (and run the queue first);
- `read_all(vread, BiasOrder.Cols)` returns currents [row, col]; with `BiasOrder.Rows` the
  blocks are per word line, so the array comes transposed (libarc2 `read_all`);
- a channel in the standard range swings +-10 V, in the extended range +-20 V
  (`set_channel_range`); beyond it the double raises `ArC2Error`, as libarc2 refuses an
  invalid voltage.

Currents are float32 `G * vread` (`sim_backend.readout.current_f32`), zero where no device
is connected. Every pulse is logged (device, V, width); pulses reach the simulated array as
one plan at the next read, one group per `finalise_operation`, so a plan delivered group by
group lands on the array exactly as it does on the simulator. For timing, `latency_s` delays
every call that exchanges data with the board and `op_setup_s` is the board's own time per
pulse operation besides the pulse (libarc2 waits 30 us after setting up the drivers of every
fast pulse).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.arc2 import (
    CHANNELS,
    COL_OF,
    MIN_NANOS,
    NANOS_STEP,
    RANGE_V,
    ROW_OF,
    SLOW_EXTRA_NANOS,
    SLOW_NANOS,
)
from drivers.emu_array import StagedGroup, plan_of
from protocols.backend import CrossbarBackend
from sim_backend.readout import current_f32

#: Calls that exchange data with the board (the others fill the command buffer); an emulated
#: latency applies to these.
TALKS_TO_BOARD = frozenset(
    {"execute", "wait", "finalise_operation", "read_all", "read_slice", "read_one", "Instrument"}
)


class ArC2Error(Exception):
    """What pyarc2 raises when libarc2 refuses an operation."""


class _Variant:
    """An enum member the way pyarc2 exposes Rust enums: an opaque class attribute."""

    def __init__(self, owner: str, name: str) -> None:
        self.owner = owner
        self.name = name

    def __repr__(self) -> str:
        return f"{self.owner}.{self.name}"


class BiasOrder:
    Cols = _Variant("BiasOrder", "Cols")
    Rows = _Variant("BiasOrder", "Rows")


class OutputRange:
    STD = _Variant("OutputRange", "STD")
    EXT = _Variant("OutputRange", "EXT")


class ControlMode:
    Header = _Variant("ControlMode", "Header")
    Internal = _Variant("ControlMode", "Internal")


class IdleMode(enum.Enum):
    """pyarc2.IdleMode (a Python enum there too)."""

    Float = 0b01
    SoftGnd = 0b10
    HardGnd = 0b11


@dataclass(frozen=True)
class Arc2Pulse:
    """One pulse a device received: 0-based row and column, V across it, width applied."""

    seq: int
    row: int
    col: int
    amplitude_v: float
    width_s: float


@dataclass
class _Op:
    devices: list[tuple[int, int]]
    amplitude_v: float
    width_s: float
    parallel: bool


class Arc2Board:
    """What the double's instruments share: the array, the pulse log, the call log."""

    def __init__(
        self,
        array: CrossbarBackend,
        *,
        ids: Iterable[int] = (0,),
        log: Any = None,
        latency_s: float = 0.0,
        op_setup_s: float = 0.0,
    ):
        self.array = array
        self.latency_s = latency_s
        self.op_setup_s = op_setup_s
        self.rows, self.cols = array.shape
        if self.rows > 32 or self.cols > 32:
            raise ValueError(f"an ArC TWO holds a 32 x 32 array, not {self.rows} x {self.cols}")
        self.ids = list(ids)
        self.log = log
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pulses: list[Arc2Pulse] = []
        self.ignored: list[str] = []
        self.idle: IdleMode | None = None
        self.lock = threading.RLock()
        self._groups: list[StagedGroup] = []
        self._open_group = False

    def record(self, name: str, args: dict[str, Any]) -> None:
        self.calls.append((name, args))
        if self.latency_s and name in TALKS_TO_BOARD:
            time.sleep(self.latency_s)
        if self.log is not None:
            shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
            self.log.write("arc2", ">", f"{name}({shown})".encode("ascii"))

    def reply(self, name: str, value: Any) -> None:
        if self.log is not None:
            self.log.write("arc2", "<", f"{name} -> {_show(value, full=True)}".encode("ascii"))

    # -- pulses reaching the array -------------------------------------------------------------
    def deliver(self, op: _Op) -> None:
        """Apply one executed pulse operation (logged at once, handed to the array later)."""
        for r, c in op.devices:
            self.pulses.append(Arc2Pulse(len(self.pulses), r, c, op.amplitude_v, op.width_s))
        live = [(r, c) for r, c in op.devices if r < self.rows and c < self.cols]
        if not live:
            return
        last = self._groups[-1] if self._groups and self._open_group else None
        if last is None or (last.amplitude_v, last.width_s, last.parallel) != (
            op.amplitude_v,
            op.width_s,
            op.parallel,
        ):
            zeros = np.zeros((self.rows, self.cols), dtype=np.int64)
            last = StagedGroup(op.amplitude_v, op.width_s, op.parallel, zeros)
            self._groups.append(last)
            self._open_group = True
        for r, c in live:
            last.counts[r, c] += 1

    def end_group(self) -> None:
        self._open_group = False

    def flush(self) -> None:
        """Hand the pulses since the last read to the array as one plan (V/2 biasing)."""
        with self.lock:
            if self._groups:
                plan = plan_of(self.rows, self.cols, self._groups, "v2")
                self._groups = []
                self._open_group = False
                self.array.apply(plan)

    def currents(self, vread: float) -> NDArray[np.float32]:
        """32 x 32 read currents [row, col] (0 where no device is connected)."""
        self.flush()
        out = np.zeros((32, 32), dtype=np.float32)
        out[: self.rows, : self.cols] = current_f32(self.array.read(), vread)
        return out

    def pulse_counts(self) -> NDArray[np.int64]:
        out = np.zeros((32, 32), dtype=np.int64)
        for p in self.pulses:
            out[p.row, p.col] += 1
        return out


def _show(value: Any, *, full: bool = False) -> str:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            dims = "x".join(str(d) for d in value.shape)
            return f"f32[{dims}] " + " ".join(f"{v:.9g}" for v in value.reshape(-1))
        return "[" + ", ".join(str(int(v)) for v in value.reshape(-1)) + "]"
    if isinstance(value, float):
        return f"{value:.9g}"
    if isinstance(value, IdleMode):
        return f"IdleMode.{value.name}"
    return repr(value)


def _chans(values: Any) -> list[int]:
    arr = np.asarray(values, dtype=np.uint64)
    if arr.ndim != 1:
        raise TypeError("channel lists must be one-dimensional")
    out = [int(v) for v in arr]
    if any(v >= CHANNELS for v in out):
        raise ArC2Error(f"Invalid channel in {out}")
    return out


def _width_s(nanos: int) -> float:
    """The width the board applies for `nanos` (clamped, truncated, slow-path extra)."""
    n = int(nanos)
    if n <= 0:
        raise ArC2Error(f"Invalid pulse width {nanos}")
    if n < MIN_NANOS:
        n = MIN_NANOS
    n -= n % NANOS_STEP
    if n >= SLOW_NANOS:
        n += SLOW_EXTRA_NANOS
    return n / 1e9


class EmulatedInstrument:
    """pyarc2.Instrument's surface, backed by an `Arc2Board`."""

    def __init__(self, port: int, firmware: str, init: bool = True, *, board: Arc2Board) -> None:
        self._board = board
        board.record("Instrument", {"port": port, "firmware": firmware, "init": init})
        if port not in board.ids:
            raise ArC2Error(f"Invalid ArC2 device id: {port}")
        self._range = dict.fromkeys(range(CHANNELS), "STD")
        self._queue: list[_Op] = []
        self._grounded: list[int] = []

    # -- configuration ---------------------------------------------------------------------
    def set_channel_range(self, chans: Any, rng: _Variant) -> EmulatedInstrument:
        self._board.record("set_channel_range", {"chans": np.asarray(chans), "rng": rng})
        if not isinstance(rng, _Variant) or rng.owner != "OutputRange":
            raise TypeError(f"rng must be an OutputRange, got {rng!r}")
        for ch in _chans(chans):
            self._range[ch] = rng.name
        return self

    def connect_to_gnd(self, chans: Any) -> EmulatedInstrument:
        self._board.record("connect_to_gnd", {"chans": np.asarray(chans)})
        self._grounded = _chans(chans)
        return self

    def ground_all(self) -> EmulatedInstrument:
        self._board.record("ground_all", {})
        return self

    def float_all(self) -> EmulatedInstrument:
        self._board.record("float_all", {})
        return self

    def execute(self) -> EmulatedInstrument:
        self._board.record("execute", {})
        self._run_queue()
        return self

    def _run_queue(self) -> None:
        with self._board.lock:
            busy = sum(self._board.op_setup_s + op.width_s for op in self._queue)
            for op in self._queue:
                self._board.deliver(op)
            self._queue = []
        if self._board.op_setup_s and busy:
            time.sleep(busy)  # the board runs the queue: settling delay and pulse per operation

    def wait(self) -> None:
        self._board.record("wait", {})

    def finalise_operation(
        self, mode: IdleMode | None = None, control: _Variant | None = None
    ) -> None:
        self._board.record("finalise_operation", {"mode": mode, "control": control})
        if mode is not None and not isinstance(mode, IdleMode):
            raise ArC2Error("Invalid idle mode")
        self._run_queue()
        self._board.end_group()
        if mode is not None:
            self._board.idle = mode

    # -- pulses ----------------------------------------------------------------------------
    def _check_v(self, chans: Iterable[int], v: float) -> None:
        for ch in chans:
            if abs(v) > RANGE_V[self._range[ch]] + 1e-9:
                raise ArC2Error(f"Invalid voltage or current argument: {v}")

    def pulse_one(self, low: int, high: int, voltage: float, nanos: int) -> EmulatedInstrument:
        self._board.record(
            "pulse_one", {"low": low, "high": high, "voltage": voltage, "nanos": nanos}
        )
        self._check_v((low, high), voltage / 2.0)
        width = _width_s(nanos)
        if low in ROW_OF and high in COL_OF:
            self._queue.append(_Op([(ROW_OF[low], COL_OF[high])], voltage, width, False))
        elif low in COL_OF and high in ROW_OF:
            self._queue.append(_Op([(ROW_OF[high], COL_OF[low])], -voltage, width, False))
        else:
            self._board.ignored.append(f"pulse_one({low}, {high}): no device between them")
        return self

    def pulse_slice_masked(
        self, chan: int, voltage: float, nanos: int, mask: Any
    ) -> EmulatedInstrument:
        highs = _chans(mask)
        self._board.record(
            "pulse_slice_masked",
            {"chan": chan, "voltage": voltage, "nanos": nanos, "mask": np.asarray(highs)},
        )
        self._check_v((chan, *highs), voltage / 2.0)
        width = _width_s(nanos)
        if chan in ROW_OF:
            devices = [(ROW_OF[chan], COL_OF[h]) for h in highs if h in COL_OF]
            sign = 1.0
        elif chan in COL_OF:
            devices = [(ROW_OF[h], COL_OF[chan]) for h in highs if h in ROW_OF]
            sign = -1.0
        else:
            raise ArC2Error(f"Invalid channel {chan}")
        if len(devices) != len(highs):
            self._board.ignored.append(f"pulse_slice_masked({chan}): mask lines of its own kind")
        if devices:
            self._queue.append(_Op(devices, sign * voltage, width, True))
        return self

    # -- reads -----------------------------------------------------------------------------
    def _read(self, chans: Iterable[int], vread: float) -> NDArray[np.float32]:
        self._check_v(chans, vread)
        self._run_queue()
        return self._board.currents(vread)

    def read_all(self, vread: float, order: _Variant) -> NDArray[np.float32]:
        self._board.record("read_all", {"vread": vread, "order": order})
        if not isinstance(order, _Variant) or order.owner != "BiasOrder":
            raise TypeError(f"order must be a BiasOrder, got {order!r}")
        i = self._read(range(CHANNELS), vread)
        out = i if order.name == "Cols" else np.ascontiguousarray(i.T)
        self._board.reply("read_all", out)
        return out

    def read_slice(self, chan: int, vread: float) -> NDArray[np.float32]:
        self._board.record("read_slice", {"chan": chan, "vread": vread})
        i = self._read((chan,), vread)
        if chan in ROW_OF:
            out = np.ascontiguousarray(i[ROW_OF[chan], :])
        elif chan in COL_OF:
            out = np.ascontiguousarray(i[:, COL_OF[chan]])
        else:
            raise ArC2Error(f"Invalid channel {chan}")
        self._board.reply("read_slice", out)
        return out

    def read_one(self, low: int, high: int, vread: float) -> float:
        self._board.record("read_one", {"low": low, "high": high, "vread": vread})
        i = self._read((low, high), vread)
        if low in ROW_OF and high in COL_OF:
            value = float(i[ROW_OF[low], COL_OF[high]])
        elif low in COL_OF and high in ROW_OF:
            value = float(i[ROW_OF[high], COL_OF[low]])
        else:
            value = 0.0
        self._board.reply("read_one", value)
        return value


class Pyarc2Double:
    """A stand-in for the `pyarc2` module: the names the backend uses, bound to one board."""

    BiasOrder = BiasOrder
    OutputRange = OutputRange
    ControlMode = ControlMode
    IdleMode = IdleMode
    ArC2Error = ArC2Error

    def __init__(self, board: Arc2Board) -> None:
        self.board = board

    def find_ids(self) -> list[int]:
        self.board.record("find_ids", {})
        return list(self.board.ids)

    def Instrument(self, port: int, firmware: str, init: bool = True) -> EmulatedInstrument:
        return EmulatedInstrument(port, firmware, init, board=self.board)
