"""The abstract crossbar backend: the one contract the simulator and every instrument meet.

Public methods enforce the rules once (open state, shapes, index ranges, finite inputs, safety
limits before anything is sent, pulse bookkeeping); subclasses fill the private hooks
(`_read`, `_apply`, and optionally `_mvm`, `_snapshot`/`_restore`, `_close`), in the manner of
scipy's OdeSolver. Conductances are in siemens, voltages in volts, currents in amperes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field

from protocols.limits import DEFAULT_READ_V, SafetyLimits, check_plan, check_read_voltage
from protocols.plan import BiasScheme, PulsePlan
from protocols.shutdown import held


class BackendError(RuntimeError):
    """A backend could not do what was asked (dead instrument, protocol error, ...)."""


class BackendStateError(BackendError):
    """The backend is closed, or in a state where the call makes no sense."""


class BackendNotSupported(NotImplementedError):
    """The backend does not offer this optional capability (see `BackendInfo`)."""


class BackendInfo(BaseModel):
    """What a backend is and what it can do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str = Field(description="'sim', 'visa', 'serial', ...")
    rows: int = Field(gt=0)
    cols: int = Field(gt=0)
    g_min_s: float = Field(gt=0.0, description="nominal lowest conductance")
    g_max_s: float = Field(gt=0.0, description="nominal highest conductance")
    supports_mvm: bool = False
    supports_snapshot: bool = False
    supports_row_parallel: bool = False
    bias_schemes: tuple[BiasScheme, ...] = Field(
        default=("none",),
        description="how the backend can bias unselected lines while it pulses: 'none' "
        "(floating or grounded), 'v2', 'v3'",
    )
    min_width_s: float | None = Field(default=None, description="shortest pulse it can fire")
    max_width_s: float | None = Field(default=None, description="longest pulse it can fire")
    max_abs_v: float | None = Field(default=None, description="largest |amplitude| it can fire")
    read_v: float | None = Field(default=None, description="the voltage it reads at, V")
    details: dict[str, Any] = Field(default_factory=dict)


IndexSpec = int | Sequence[int] | NDArray[np.integer[Any]] | slice | None


def _resolve_index(spec: IndexSpec, size: int, what: str) -> NDArray[np.intp]:
    if spec is None:
        return np.arange(size, dtype=np.intp)
    if isinstance(spec, slice):
        return np.arange(size, dtype=np.intp)[spec]
    arr = np.atleast_1d(np.asarray(spec))
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{what} indices must be integers, got {spec!r}")
    arr = arr.astype(np.intp)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)][0]
        raise IndexError(f"{what} index {bad} is out of range for {size} {what}s")
    return arr


class CrossbarBackend(ABC):
    """A `rows x cols` crossbar that can be read and pulsed.

    `read_v` is the voltage every read (and every analog product) applies to a device; it is
    checked against the safety limits, and the device's switching threshold `switching_v`
    when the backend knows it, before the first byte and again at every read: a read at or
    above either would program instead of read.
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        *,
        limits: SafetyLimits | None = None,
        read_v: float | None = None,
        switching_v: float | None = None,
    ) -> None:
        if rows <= 0 or cols <= 0:
            raise ValueError(f"crossbar shape must be positive, got ({rows}, {cols})")
        self._rows = int(rows)
        self._cols = int(cols)
        self.limits = limits if limits is not None else SafetyLimits()
        self.switching_v = switching_v
        self._read_v = DEFAULT_READ_V
        self.read_v = DEFAULT_READ_V if read_v is None else read_v
        self._pulse_counts = np.zeros((self._rows, self._cols), dtype=np.int64)
        self._closed = False

    # -- public API: rules enforced here -------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self._rows, self._cols)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def read_v(self) -> float:
        """The read voltage, V (checked against the limits whenever it is set or used)."""
        return self._read_v

    @read_v.setter
    def read_v(self, value: float) -> None:
        self._check_read(value)
        self._read_v = float(value)

    def _check_read(self, volts: float, what: str = "read voltage") -> None:
        check_read_voltage(volts, self.limits, switching_v=self.switching_v, source=what)

    @property
    def pulse_counts(self) -> NDArray[np.int64]:
        """Pulses delivered to each device through this backend object (a copy)."""
        return self._pulse_counts.copy()

    def read(self, rows: IndexSpec = None, cols: IndexSpec = None) -> NDArray[np.float64]:
        """Conductances (S) of the selected rows x cols block (all devices by default)."""
        self._check_open()
        r = _resolve_index(rows, self._rows, "row")
        c = _resolve_index(cols, self._cols, "col")
        self._check_read(self._read_v)
        g = np.asarray(self._read(r, c), dtype=np.float64)
        if g.shape != (r.size, c.size):
            raise BackendError(f"backend returned shape {g.shape}, expected {(r.size, c.size)}")
        if not np.all(np.isfinite(g)):
            raise BackendError("backend returned a non-finite conductance")
        return g

    def apply(self, plan: PulsePlan) -> None:
        """Apply `plan` after checking its shape and the safety limits; nothing unsafe is sent."""
        self._check_open()
        if not isinstance(plan, PulsePlan):
            raise TypeError(f"apply() takes a PulsePlan, got {type(plan).__name__}")
        if plan.shape != self.shape:
            raise ValueError(f"plan shape {plan.shape} does not match the crossbar {self.shape}")
        check_plan(plan, self.limits, run_counts=self._pulse_counts)
        if plan.is_empty:
            return
        self._apply(plan)
        for group in plan.groups:  # in place: no (rows, cols) temporary
            self._pulse_counts += group.counts

    def mvm(self, voltages: ArrayLike, *, transpose: bool = False) -> NDArray[np.float64]:
        """Analog product: voltages on rows give column currents `v @ G`.

        With `transpose=True`, voltages on columns give row currents `v @ G.T`. A batch of
        vectors is accepted as a 2-D array (batch, n).
        """
        self._check_open()
        if not self.info().supports_mvm:
            raise BackendNotSupported(f"{type(self).__name__} has no analog matrix-vector product")
        v = np.asarray(voltages, dtype=np.float64)
        n_in = self._cols if transpose else self._rows
        if v.ndim not in (1, 2) or v.shape[-1] != n_in:
            raise ValueError(f"mvm expects voltages of length {n_in}, got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError("mvm voltages must be finite")
        peak = float(np.max(np.abs(v))) if v.size else 0.0
        if peak > 0.0:  # an analog product reads: the read rule holds for every input
            self._check_read(peak, "mvm input")
        batch = np.atleast_2d(v)
        out = np.asarray(self._mvm(batch, transpose), dtype=np.float64)
        expected = (batch.shape[0], self._rows if transpose else self._cols)
        if out.shape != expected:
            raise BackendError(
                f"backend returned currents of shape {out.shape}, expected {expected}"
            )
        if not np.all(np.isfinite(out)):
            raise BackendError("backend returned a non-finite current")
        return out[0] if v.ndim == 1 else out

    def snapshot(self) -> dict[str, Any]:
        """Exact state (devices, random generators, bookkeeping) for a bit-identical resume."""
        self._check_open()
        state = self._snapshot()
        state["__pulse_counts__"] = self._pulse_counts.copy()
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Return to a state taken by `snapshot()`."""
        self._check_open()
        state = dict(state)
        counts = np.asarray(state.pop("__pulse_counts__"), dtype=np.int64)
        if counts.shape != self.shape:
            raise ValueError(f"snapshot is for shape {counts.shape}, crossbar is {self.shape}")
        self._restore(state)
        self._pulse_counts = counts.copy()

    def info(self) -> BackendInfo:
        return self._info().model_copy(update={"read_v": self._read_v})

    def close(self) -> None:
        """Release the backend (instrument to its safe state); no signal cuts this short."""
        if not self._closed:
            self._closed = True
            with held():
                self._close()

    def __enter__(self) -> CrossbarBackend:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendStateError(f"{type(self).__name__} is closed")

    # -- hooks for subclasses ------------------------------------------------------------
    @abstractmethod
    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        """Conductances of the rows x cols block; indices are already validated."""

    @abstractmethod
    def _apply(self, plan: PulsePlan) -> None:
        """Deliver every pulse of a validated, limit-checked, non-empty plan."""

    @abstractmethod
    def _info(self) -> BackendInfo:
        """Describe the backend."""

    def _mvm(self, voltages: NDArray[np.float64], transpose: bool) -> NDArray[np.float64]:
        raise BackendNotSupported(f"{type(self).__name__} has no analog matrix-vector product")

    def _snapshot(self) -> dict[str, Any]:
        raise BackendNotSupported(f"{type(self).__name__} cannot snapshot its state")

    def _restore(self, state: dict[str, Any]) -> None:
        raise BackendNotSupported(f"{type(self).__name__} cannot restore a state")

    def _close(self) -> None:
        """Release instruments or files; called once."""
