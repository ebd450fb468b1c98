"""Half-select disturb of a passive array: which cells see V/2 or V/3, and how often.

V/2 scheme: the selected row is at V, the selected column at 0, every other line at V/2, so the
cells sharing the row or the column of a selected cell see V/2 (same polarity), the rest 0.
V/3 scheme: unselected rows at V/3, unselected columns at 2V/3: cells sharing a line with the
selected cell see +V/3, every other cell -V/3 (opposite polarity).

Serial delivery (`parallel=False`) pulses one device at a time: device (i, j) is half-selected
by every pulse sent to another device of row i or column j, R_i + C_j - 2 c_ij times.
Parallel delivery (`parallel=True`) runs max(c) phases; in phase k every device with c > k is
pulsed at once, so row i is active in max_j c_ij phases, and device (i, j) is half-selected in
max(rowmax_i, colmax_j) - c_ij phases (the phases where its row or column is active but it is
not selected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from protocols.plan import BiasScheme


@dataclass(frozen=True)
class HalfSelect:
    """`counts` (rows, cols) half-select pulses at `fraction` of the amplitude, `sign` polarity."""

    fraction: float
    sign: int
    counts: NDArray[np.int64]


def half_selects(counts: NDArray[np.int64], bias: BiasScheme, parallel: bool) -> list[HalfSelect]:
    """The half-select stress one pulse group puts on every device of the array."""
    if bias == "none":
        return []
    c = np.asarray(counts, dtype=np.int64)
    if parallel:
        row = c.max(axis=1)
        col = c.max(axis=0)
        line = np.maximum(row[:, None], col[None, :]) - c
        total = int(c.max()) if c.size else 0
    else:
        row = c.sum(axis=1)
        col = c.sum(axis=0)
        line = row[:, None] + col[None, :] - 2 * c
        total = int(c.sum())
    if bias == "v2":
        return [HalfSelect(0.5, 1, line)]
    # Parallel: phases in which neither the row nor the column of (i, j) is active.
    # Serial: pulses sent to devices sharing neither line with (i, j).
    other = total - (line + c) if parallel else total - row[:, None] - col[None, :] + c
    return [HalfSelect(1.0 / 3.0, 1, line), HalfSelect(1.0 / 3.0, -1, other)]
