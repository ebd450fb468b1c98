"""Discrete Hopfield baselines: Hebbian and Storkey (1997) storage, asynchronous recall.

These are the paper's comparison rules (Table I). States are ±1, the diagonal of W is zero,
and recall updates one unit at a time in a fresh random order each sweep until a whole sweep
changes nothing. Recall is vectorised over samples: every sample has its own order, and step
k of a sweep updates unit order[s, k] of every sample s at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _check_bipolar(patterns: Array) -> Array:
    P = np.atleast_2d(np.asarray(patterns, dtype=np.float64))
    if not np.all(np.abs(P) == 1.0):
        raise ValueError("Hopfield patterns must be ±1")
    return P


def hebbian(patterns: Array) -> Array:
    """W = (1/N) sum_mu xi^mu xi^mu^T with a zero diagonal."""
    P = _check_bipolar(patterns)
    n = P.shape[1]
    W = P.T @ P / n
    np.fill_diagonal(W, 0.0)
    return W


def storkey(patterns: Array) -> Array:
    """Storkey's incremental rule, one pattern at a time.

    w_ij += (xi_i xi_j - xi_i h_ji - h_ij xi_j) / N with the local field
    h_ij = sum_{k != i, j} w_ik xi_k; the diagonal is kept at zero.
    """
    P = _check_bipolar(patterns)
    n = P.shape[1]
    W = np.zeros((n, n))
    for xi in P:
        field = W @ xi  # sum_k w_ik xi_k, diagonal is zero so k != i already
        # h_ij = field_i - w_ij xi_j  (drop k = j)
        h = field[:, None] - W * xi[None, :]
        W = W + (np.outer(xi, xi) - xi[:, None] * h.T - h * xi[None, :]) / n
        np.fill_diagonal(W, 0.0)
    return W


@dataclass(frozen=True)
class Recall:
    """Final ±1 states of a recall batch and how it ended."""

    state: Array
    sweeps: NDArray[np.int64]
    converged: NDArray[np.bool_]


#: Local fields within this of zero count as zero (the unit keeps its state), so that rounding
#: in the incrementally updated fields cannot decide a tie.
FIELD_TIE = 1e-9


def recall(W: Array, start: Array, rng: np.random.Generator, *, max_sweeps: int = 100) -> Recall:
    """Asynchronous sign updates in random order per sample until a sweep changes nothing.

    A unit whose local field is zero keeps its state. The fields of every sample are kept up
    to date incrementally (a flip of unit u changes them by 2 s_u W[:, u]), so one update
    step costs O(samples) plus O(N) per sample that flipped, not a full product. Samples
    that have stopped are left out of later sweeps, and a sample whose state is already a
    fixed point when a sweep starts (no unit's field disagrees with it) finishes without
    walking that sweep: whatever the order, the sweep would change nothing. It is counted.
    """
    W = np.asarray(W, dtype=np.float64)
    WT = np.ascontiguousarray(W.T)  # WT[u] = W[:, u], the fields' change when unit u flips
    S = np.where(np.atleast_2d(np.asarray(start, dtype=np.float64)) >= 0.0, 1.0, -1.0)
    b, n = S.shape
    sweeps = np.zeros(b, dtype=np.int64)
    converged = np.zeros(b, dtype=bool)
    active = np.arange(b)
    for _ in range(max_sweeps):
        if active.size == 0:
            break
        Sa = S[active]
        H = Sa @ WT  # H[s, i] = sum_j W[i, j] S[s, j], recomputed exactly every sweep
        unstable = ((H > FIELD_TIE) & (Sa < 0.0)) | ((H < -FIELD_TIE) & (Sa > 0.0))
        quiet = ~unstable.any(axis=1)
        if quiet.any():
            sweeps[active[quiet]] += 1
            converged[active[quiet]] = True
            active, Sa, H = active[~quiet], Sa[~quiet], H[~quiet]
            if active.size == 0:
                break
        order = rng.permuted(np.broadcast_to(np.arange(n), (active.size, n)), axis=1)
        rows = np.arange(active.size)
        changed = np.zeros(active.size, dtype=bool)
        for k in range(n):
            unit = order[:, k]
            field = H[rows, unit]
            old = Sa[rows, unit]
            new = np.where(field > FIELD_TIE, 1.0, np.where(field < -FIELD_TIE, -1.0, old))
            flip = np.flatnonzero(new != old)
            if flip.size:
                u = unit[flip]
                Sa[flip, u] = new[flip]
                H[flip] += (2.0 * new[flip])[:, None] * WT[u]
                changed[flip] = True
        S[active] = Sa
        sweeps[active] += 1
        converged[active[~changed]] = True
        active = active[changed]
    return Recall(state=S, sweeps=sweeps, converged=converged)
