"""Half-select counts against a pulse-by-pulse (and phase-by-phase) enumeration."""

from __future__ import annotations

import numpy as np
import pytest

from sim_backend.disturb import half_selects


def brute_serial(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = c.shape
    line = np.zeros_like(c)
    other = np.zeros_like(c)
    for i in range(rows):
        for j in range(cols):
            for _ in range(c[i, j]):  # one pulse to (i, j)
                shares = np.zeros((rows, cols), dtype=bool)
                shares[i, :] = True
                shares[:, j] = True
                shares[i, j] = False
                line += shares
                others = ~shares
                others[i, j] = False
                other += others
    return line, other


def brute_parallel(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    line = np.zeros_like(c)
    other = np.zeros_like(c)
    for k in range(int(c.max())):
        selected = c > k
        active = selected.any(axis=1)[:, None] | selected.any(axis=0)[None, :]
        line += active & ~selected
        other += ~active
    return line, other


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_half_select_counts_match_enumeration(parallel: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 4, size=(4, 5)) * (rng.random((4, 5)) < 0.5)
    line, other = (brute_parallel if parallel else brute_serial)(c)
    v2 = half_selects(c, "v2", parallel)
    assert len(v2) == 1 and v2[0].fraction == 0.5 and v2[0].sign == 1
    np.testing.assert_array_equal(v2[0].counts, line)
    same, opposite = half_selects(c, "v3", parallel)
    assert (same.sign, opposite.sign) == (1, -1)
    np.testing.assert_array_equal(same.counts, line)
    np.testing.assert_array_equal(opposite.counts, other)
    # The simulator's float32 fast path gives the same counts in preallocated buffers.
    f = c.astype(np.float32)
    out = (np.empty_like(f), np.empty_like(f))
    fast = half_selects(f, "v3", parallel, out=out)
    assert fast[0].counts is out[0] and fast[1].counts is out[1]
    np.testing.assert_array_equal(fast[0].counts, line.astype(np.float32))
    np.testing.assert_array_equal(fast[1].counts, other.astype(np.float32))
    assert half_selects(c, "none", parallel) == []
