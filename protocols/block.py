"""A block of devices inside a crossbar, and the backend that sees only that block.

A backend reports the real shape of its array (the board says it; the switch-matrix station
is told how its lines are wired; the simulator is made at a size). A command that needs
`rows x cols` devices works on a block of that shape inside the array, written
``R0:R1,C0:C1`` (rows R0 to R1 - 1 and columns C0 to C1 - 1, as Python slices): `BlockView`
offsets every read, plan and product into the block and refuses everything else, so a
command can never address a line outside the array or a device outside its block.

Lives below both `hil.insitu` and `hil.characterize`, which use it without importing each
other. Half-select biasing (V/2, V/3) acts on the array's lines, so devices outside the block
see the same half-select stress as unselected devices inside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from protocols.backend import BackendInfo, CrossbarBackend
from protocols.errors import InputError
from protocols.plan import PulseGroup, PulsePlan

_BLOCK_RE = re.compile(r"^\s*(\d{1,6})\s*:\s*(\d{1,6})\s*,\s*(\d{1,6})\s*:\s*(\d{1,6})\s*$")
_SHAPE_RE = re.compile(r"^\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*$")


def _shown(text: object) -> str:
    shown = " ".join(repr(text).split())
    return shown if len(shown) <= 40 else shown[:37] + "..."


def parse_shape(text: str | tuple[int, int], what: str = "array") -> tuple[int, int]:
    """'8x16' (rows x columns) -> (8, 16); InputError naming `what` otherwise."""
    if isinstance(text, tuple):
        rows, cols = (int(v) for v in text)
    else:
        m = _SHAPE_RE.match(str(text))
        if not m:
            raise InputError(f"{what} {_shown(text)}: write ROWSxCOLS, e.g. 8x16")
        rows, cols = int(m.group(1)), int(m.group(2))
    if rows <= 0 or cols <= 0:
        raise InputError(f"{what} {rows}x{cols}: rows and columns must be positive")
    return rows, cols


@dataclass(frozen=True)
class Block:
    """Rows `row0` .. `row0 + rows - 1` and columns `col0` .. `col0 + cols - 1`."""

    row0: int
    rows: int
    col0: int
    cols: int

    def __post_init__(self) -> None:
        if self.row0 < 0 or self.col0 < 0 or self.rows <= 0 or self.cols <= 0:
            raise InputError(f"block {self}: needs at least one row and one column")

    @classmethod
    def parse(cls, text: str | Block) -> Block:
        """'R0:R1,C0:C1' (end excluded, as Python slices) -> Block."""
        if isinstance(text, Block):
            return text
        m = _BLOCK_RE.match(str(text))
        if not m:
            raise InputError(
                f"block {_shown(text)}: write R0:R1,C0:C1 (rows R0 to R1-1, columns C0 to "
                "C1-1), e.g. 0:8,0:16"
            )
        r0, r1, c0, c1 = (int(g) for g in m.groups())
        if r1 <= r0 or c1 <= c0:
            raise InputError(f"block {text}: each range must end after it starts (R0 < R1)")
        return cls(r0, r1 - r0, c0, c1 - c0)

    @classmethod
    def at_origin(cls, rows: int, cols: int) -> Block:
        return cls(0, rows, 0, cols)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def extent(self) -> tuple[int, int]:
        """The smallest array that holds the block."""
        return (self.row0 + self.rows, self.col0 + self.cols)

    def __str__(self) -> str:
        return f"{self.row0}:{self.row0 + self.rows},{self.col0}:{self.col0 + self.cols}"

    def describe(self) -> str:
        return (
            f"block {self} (rows {self.row0}-{self.row0 + self.rows - 1}, columns "
            f"{self.col0}-{self.col0 + self.cols - 1})"
        )

    def check_inside(self, shape: tuple[int, int], where: str = "the array") -> None:
        """InputError naming the first line of the block outside a `shape` array."""
        rows, cols = shape
        if self.row0 + self.rows > rows:
            raise InputError(
                f"{self.describe()} reaches row {self.row0 + self.rows - 1}, outside {where} "
                f"of {rows}x{cols} (rows 0-{rows - 1})"
            )
        if self.col0 + self.cols > cols:
            raise InputError(
                f"{self.describe()} reaches column {self.col0 + self.cols - 1}, outside "
                f"{where} of {rows}x{cols} (columns 0-{cols - 1})"
            )

    def is_whole(self, shape: tuple[int, int]) -> bool:
        return self.row0 == 0 and self.col0 == 0 and self.shape == tuple(shape)


class BlockView(CrossbarBackend):
    """The devices of `block` inside `inner`, as a crossbar of the block's shape.

    Reads, plans and analog products are offset into the block; nothing outside it can be
    addressed (the base class refuses out-of-range indices and misshapen plans). Closing the
    view closes the array. Limits are the array's, checked again by the array itself.
    """

    def __init__(self, inner: CrossbarBackend, block: Block) -> None:
        block.check_inside(inner.shape, f"the {inner.info().kind} array")
        super().__init__(
            block.rows,
            block.cols,
            limits=inner.limits,
            read_v=inner.read_v,
            switching_v=inner.switching_v,
        )
        self.inner = inner
        self.block = block
        self._r = slice(block.row0, block.row0 + block.rows)
        self._c = slice(block.col0, block.col0 + block.cols)

    def expand(self, plan: PulsePlan) -> PulsePlan:
        """The plan on the whole array: the block's counts in place, zero elsewhere."""
        groups = []
        for group in plan.groups:
            counts = np.zeros(self.inner.shape, dtype=np.int64)
            counts[self._r, self._c] = group.counts
            groups.append(PulseGroup(group.shape, counts, group.parallel))
        return PulsePlan.from_groups(self.inner.shape, groups, plan.bias)

    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        return self.inner.read(rows + self.block.row0, cols + self.block.col0)

    def _apply(self, plan: PulsePlan) -> None:
        self.inner.apply(self.expand(plan))

    def _mvm(self, voltages: NDArray[np.float64], transpose: bool) -> NDArray[np.float64]:
        n_in = self.inner.shape[1] if transpose else self.inner.shape[0]
        full = np.zeros((voltages.shape[0], n_in))
        full[:, self._c if transpose else self._r] = voltages
        out = np.asarray(self.inner.mvm(full, transpose=transpose), dtype=np.float64)
        return out[:, self._r if transpose else self._c]

    def _snapshot(self) -> dict[str, Any]:
        return {"array": self.inner.snapshot()}

    def _restore(self, state: dict[str, Any]) -> None:
        self.inner.restore(state["array"])

    def _info(self) -> BackendInfo:
        info = self.inner.info()
        details = dict(info.details)
        details.update(array=f"{info.rows}x{info.cols}", block=str(self.block))
        return info.model_copy(
            update={
                "name": f"{info.name}, {self.block.describe()} of {info.rows}x{info.cols}",
                "rows": self.block.rows,
                "cols": self.block.cols,
                "details": details,
            }
        )

    def _close(self) -> None:
        self.inner.close()


class _TrackingBlockView(BlockView):
    """A block of a backend that tracks delivery (the pulse board): plans are expanded to
    the array before they are ticketed, checked or completed."""

    def delivery_ticket(self, plan: PulsePlan) -> Any:
        return self.inner.delivery_ticket(self.expand(plan))  # type: ignore[attr-defined]

    def delivery_status(self, ticket: Any) -> Any:
        return self.inner.delivery_status(ticket)  # type: ignore[attr-defined]

    def complete_delivery(self, plan: PulsePlan, ticket: Any) -> Any:
        return self.inner.complete_delivery(self.expand(plan), ticket)  # type: ignore[attr-defined]


def view(inner: CrossbarBackend, block: Block) -> CrossbarBackend:
    """`inner` itself when the block is the whole array, else a `BlockView` of it."""
    if block.is_whole(inner.shape):
        return inner
    tracking = all(
        callable(getattr(inner, name, None))
        for name in ("delivery_ticket", "delivery_status", "complete_delivery")
    )
    return (_TrackingBlockView if tracking else BlockView)(inner, block)
