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
from typing import Any

import numpy as np
from numpy.typing import NDArray

from protocols.plan import BiasScheme


@dataclass(frozen=True)
class HalfSelect:
    """`counts` (rows, cols) half-select pulses at `fraction` of the amplitude, `sign` polarity."""

    fraction: float
    sign: int
    counts: NDArray[Any]


def half_selects(
    counts: NDArray[Any],
    bias: BiasScheme,
    parallel: bool,
    *,
    out: tuple[NDArray[Any], NDArray[Any]] | None = None,
) -> list[HalfSelect]:
    """The half-select stress one pulse group puts on every device of the array.

    `counts` may be integers (exact) or float32 holding integers (the simulator's fast path;
    row and column sums stay exact below 2^24 pulses per line). `out` gives two (rows, cols)
    arrays of the same dtype to write into instead of allocating.
    """
    if bias == "none":
        return []
    c = np.asarray(counts)
    if out is None:
        line, other = np.empty_like(c), np.empty_like(c)
    else:
        line, other = out
    if parallel:
        np.maximum(c.max(axis=1)[:, None], c.max(axis=0)[None, :], out=line)
        line -= c
        total = float(c.max()) if c.size else 0.0
    else:
        np.add(c.sum(axis=1)[:, None], c.sum(axis=0)[None, :], out=line)
        line -= c
        line -= c
        total = float(np.sum(c, dtype=np.float64))
    if bias == "v2":
        return [HalfSelect(0.5, 1, line)]
    # Parallel: phases in which neither the row nor the column of (i, j) is active,
    # total - max(rowmax_i, colmax_j). Serial: pulses sent to devices sharing neither line
    # with (i, j), T - R_i - C_j + c_ij. Both are total - (line + c).
    np.add(line, c, out=other)
    np.subtract(c.dtype.type(total), other, out=other)
    return [HalfSelect(1.0 / 3.0, 1, line), HalfSelect(1.0 / 3.0, -1, other)]
