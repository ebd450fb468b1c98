"""A crossbar on an ArC TWO, through pyarc2 (guide: docs/instruments.md, "ArC TWO").

Channel mapping of the board's 32 x 32 layout (pyarc2 docs/overview.rst): bit-line channels
0-15 and 32-47 are the rows, word-line channels 16-31 and 48-63 the columns. The backend
drives the first `rows x cols` of them (`drivers.open_backend` wraps it in the block of
devices a command uses).

- Reads: `read_all(vread, BiasOrder.Cols)` (currents [row, col]) for most of the block,
  `read_slice(row channel, vread)` row by row otherwise; G = |I| / vread.
- Pulses: a device sees word line minus bit line. A group delivered device by device
  (`parallel=False`) goes as `pulse_one(low=row channel, high=column channel, V, ns)` per
  pulse; a row/column-parallel group (`parallel=True`, the outer-product scheme) as
  `pulse_slice_masked`: per row, the row's channel low and the pulsed columns in the mask
  (or per column, the column's channel low, the rows in the mask and -V, whichever takes
  fewer operations), one operation per wave of the row's counts. An outer-product phase
  of R x C devices repeated n times costs n * min(|R|, |C|) operations, not |R| * |C| * n.
- After every pulse group and every read: `finalise_operation(idle)` (channels back to 0 V
  by default); on close the channels are grounded and disconnected (`IdleMode.Float`).
- Output range: the smallest that holds the limits' largest pulse (each end swings V/2) and
  the read voltage: standard (+-10 V) or extended (+-20 V).

Refused before anything is queued: widths below 40 ns (libarc2 would stretch them to 40 ns),
not on the 10 ns grid, or of 500 ms and more (the slow path adds 30 us); amplitudes beyond
the range; V/3 plans (unselected lines stay at 0 V: a V/2 scheme); and for a plan that
names no scheme, a V/2 half-select above the limits' `max_half_select_v`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.arc1_backend import DeliveryUnknown
from drivers.arc2 import BIT_CHANNELS, BOARD, CHANNELS, RANGE_V, WORD_CHANNELS
from protocols.backend import BackendError, BackendInfo, CrossbarBackend
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulseGroup, PulsePlan

log = logging.getLogger(__name__)

MIN_WIDTH_S = 40e-9
WIDTH_STEP_S = 10e-9
MAX_WIDTH_S = 0.5  # exclusive: from 500 ms on, libarc2 takes the slow path (+30 us)
IDLE_MODES = ("soft_gnd", "hard_gnd", "float")
PARALLEL = ("auto", "rows", "cols")


def output_range(limits: SafetyLimits, read_v: float) -> str:
    """STD or EXT: the smallest range whose channel swing holds every allowed voltage."""
    need = max(limits.max_set_v / 2.0, limits.max_reset_v / 2.0, abs(read_v))
    for name in ("STD", "EXT"):
        if need <= RANGE_V[name]:
            return name
    raise InputError(
        f"ArC TWO: the limits allow pulses of {2 * need:g} V ({need:g} V on each end); the "
        f"extended range swings +-{RANGE_V['EXT']:g} V per channel"
    )


def nanos_of(width_s: float) -> int:
    """A width on the board's 10 ns grid, in ns; anything else is refused."""
    if not MIN_WIDTH_S - 1e-15 <= width_s < MAX_WIDTH_S:
        raise InputError(
            f"width {width_s:g} s: the ArC TWO's fast drivers take {MIN_WIDTH_S:g} s to "
            f"under {MAX_WIDTH_S:g} s (libarc2 stretches shorter pulses to 40 ns)"
        )
    steps = round(width_s / WIDTH_STEP_S)
    if abs(steps * WIDTH_STEP_S - width_s) > 1e-3 * WIDTH_STEP_S:
        raise InputError(f"width {width_s:g} s is not on the ArC TWO's 10 ns timing grid")
    return int(steps * 10)


class Arc2Backend(CrossbarBackend):
    """`CrossbarBackend` on an ArC TWO (`instrument`: a pyarc2.Instrument; `api`: pyarc2)."""

    NAME = "ArC TWO"

    def __init__(
        self,
        instrument: Any,
        api: Any,
        rows: int,
        cols: int,
        *,
        limits: SafetyLimits | None = None,
        g_range_s: tuple[float, float],
        read_v: float | None = None,
        idle: str = "soft_gnd",
        parallel: str = "auto",
        chunk_ops: int = 64,
        name: str = "",
        on_close: Callable[[], None] | None = None,
    ) -> None:
        if rows > BOARD[0] or cols > BOARD[1]:
            raise InputError(f"ArC TWO: a {rows} x {cols} array; the board is 32 x 32")
        super().__init__(rows, cols, limits=limits, read_v=read_v)  # read_v: checked there
        if idle not in IDLE_MODES:
            raise InputError(f"idle {idle!r}: choose {', '.join(IDLE_MODES)}")
        if parallel not in PARALLEL:
            raise InputError(f"parallel {parallel!r}: choose {', '.join(PARALLEL)}")
        if chunk_ops < 1:
            raise InputError(f"chunk_ops {chunk_ops}: at least 1")
        self.inst = instrument
        self.api = api
        self.g_range = g_range_s
        self.rows_ch = np.array(BIT_CHANNELS[:rows], dtype=np.uint64)
        self.cols_ch = np.array(WORD_CHANNELS[:cols], dtype=np.uint64)
        self.idle = {
            "soft_gnd": api.IdleMode.SoftGnd,
            "hard_gnd": api.IdleMode.HardGnd,
            "float": api.IdleMode.Float,
        }[idle]
        self.parallel = parallel
        self.chunk_ops = int(chunk_ops)
        self.name = name or "ArC TWO"
        self._on_close = on_close
        self.ops = 0
        self.range_name = output_range(self.limits, self.read_v)
        self._pyarc2_call(
            "set_channel_range",
            chans=np.arange(CHANNELS, dtype=np.uint64),
            rng=getattr(api.OutputRange, self.range_name),
        )
        self._pyarc2_call("execute")
        self._pyarc2_call("finalise_operation", mode=self.idle)

    # -- pyarc2 ------------------------------------------------------------------------------
    def _pyarc2_call(self, method: str, **kwargs: Any) -> Any:
        """Call an Instrument method by keyword: a renamed argument fails here, loudly."""
        try:
            return getattr(self.inst, method)(**kwargs)
        except self.api.ArC2Error as exc:
            raise BackendError(f"{self.name}: {method} failed: {exc}") from exc

    # -- reads -----------------------------------------------------------------------------
    def _conductances(self, currents: NDArray[Any], what: str) -> NDArray[np.float64]:
        i = np.asarray(currents, dtype=np.float64)
        if not np.all(np.isfinite(i)):
            raise BackendError(f"{self.name}: {what} returned a non-finite current; refused")
        return np.abs(i) / self.read_v

    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        if rows.size * 4 >= self._rows:
            raw = self._pyarc2_call("read_all", vread=self.read_v, order=self.api.BiasOrder.Cols)
            self.ops += 1
            block = np.asarray(raw)[: self._rows, : self._cols]
            g = self._conductances(block, "read_all")[np.ix_(rows, cols)]
        else:
            g = np.empty((rows.size, cols.size))
            for k, r in enumerate(rows):
                raw = self._pyarc2_call("read_slice", chan=int(self.rows_ch[r]), vread=self.read_v)
                self.ops += 1
                line = np.asarray(raw)[: self._cols]
                g[k] = self._conductances(line, "read_slice")[cols]
        self._pyarc2_call("finalise_operation", mode=self.idle)
        return g

    # -- pulses ----------------------------------------------------------------------------
    def _check_capability(self, plan: PulsePlan) -> None:
        if plan.bias == "v3":
            raise InputError(
                "ArC TWO: the plan asks for V/3 biasing; its slice pulses leave unselected "
                "lines at 0 V (a V/2 scheme): use scheme bias v2"
            )
        swing = RANGE_V[self.range_name]
        for k, group in enumerate(plan.groups):
            if group.total == 0:
                continue
            amp = group.shape.amplitude_v
            try:
                nanos_of(group.shape.width_s)
            except InputError as exc:
                raise InputError(f"group {k}: {exc}") from None
            if abs(amp) / 2.0 > swing:
                raise InputError(
                    f"group {k}: {amp:g} V puts {abs(amp) / 2:g} V on each end, beyond the "
                    f"{self.range_name} range's +-{swing:g} V"
                )
            half = self.limits.max_half_select_v
            if plan.bias == "none" and half is not None and abs(amp) / 2.0 > half:
                raise LimitViolation(
                    f"group {k}: the ArC TWO leaves unselected lines at 0 V, so devices sharing "
                    f"a line with a pulsed one see {abs(amp) / 2:g} V, over "
                    f"max_half_select_v={half:g} V"
                )

    def _orientation(self, counts: NDArray[np.int64]) -> str:
        if self.parallel != "auto":
            return self.parallel
        by_rows = int(counts.max(axis=1).sum())
        by_cols = int(counts.max(axis=0).sum())
        return "rows" if by_rows <= by_cols else "cols"

    def _group_ops(self, group: PulseGroup) -> list[tuple[str, dict[str, Any]]]:
        """The pyarc2 calls that deliver one group, in order."""
        amp, counts = group.shape.amplitude_v, group.counts
        nanos = nanos_of(group.shape.width_s)
        ops: list[tuple[str, dict[str, Any]]] = []
        if not group.parallel:
            for r, c in zip(*np.nonzero(counts), strict=True):
                call = {
                    "low": int(self.rows_ch[r]),
                    "high": int(self.cols_ch[c]),
                    "voltage": amp,
                    "nanos": nanos,
                }
                ops.extend(("pulse_one", call) for _ in range(int(counts[r, c])))
            return ops
        if self._orientation(counts) == "rows":
            lines, highs, volt, table = self.rows_ch, self.cols_ch, amp, counts
        else:  # the column's channel is low: the device sees -voltage
            lines, highs, volt, table = self.cols_ch, self.rows_ch, -amp, counts.T
        for k in np.flatnonzero(table.max(axis=1)):
            row = table[k]
            for wave in range(int(row.max())):
                mask = highs[row > wave]
                ops.append(
                    (
                        "pulse_slice_masked",
                        {"chan": int(lines[k]), "voltage": volt, "nanos": nanos, "mask": mask},
                    )
                )
        return ops

    def _apply(self, plan: PulsePlan) -> None:
        self._check_capability(plan)
        groups = [g for g in plan.groups if g.total > 0]
        schedule = [self._group_ops(g) for g in groups]  # everything planned before any call
        done = 0
        try:
            for ops in schedule:
                for k, (method, kwargs) in enumerate(ops, start=1):
                    self._pyarc2_call(method, **kwargs)
                    if k % self.chunk_ops == 0:
                        self._pyarc2_call("execute")
                    done += 1
                # queues the idle state behind the pulses and executes both; then wait for it
                self._pyarc2_call("finalise_operation", mode=self.idle)
                self._pyarc2_call("wait")
        except BackendError as exc:
            raise DeliveryUnknown(
                f"{exc}; {done} pulse operations of the plan were queued and the ArC TWO "
                "cannot say which of them ran: nothing is sent again"
            ) from exc
        self.ops += done

    # -- description -----------------------------------------------------------------------
    def _info(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            kind="arc2",
            rows=self._rows,
            cols=self._cols,
            g_min_s=self.g_range[0],
            g_max_s=self.g_range[1],
            supports_row_parallel=True,
            # a plan naming no scheme is delivered with the unselected lines at 0 V (V/2 on
            # the half-selected devices), checked against the limits' max_half_select_v
            bias_schemes=("none", "v2"),
            min_width_s=MIN_WIDTH_S,
            max_width_s=MAX_WIDTH_S - WIDTH_STEP_S,
            max_abs_v=2 * RANGE_V[self.range_name],
            details={
                "board_lines": list(BOARD),
                "row_channels": [int(c) for c in self.rows_ch],
                "col_channels": [int(c) for c in self.cols_ch],
                "output_range": self.range_name,
                "width_step_s": WIDTH_STEP_S,
                "operations": self.ops,
            },
        )

    def _close(self) -> None:
        """Ground every channel, then disconnect them (IdleMode.Float)."""
        try:
            self._pyarc2_call("finalise_operation", mode=self.api.IdleMode.Float)
        except BackendError as exc:
            log.warning("ArC TWO: leaving the channels idle failed: %s", exc)
        finally:
            if self._on_close is not None:
                self._on_close()
