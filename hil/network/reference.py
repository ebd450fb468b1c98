"""Reference integration of eqs. 18-19 with `scipy.integrate.solve_ivp`, one sample at a time.

This is the yardstick for the batched fixed-step solver in `hil.network.dynamics`: slow (one ODE
solve per sample, adaptive steps) but independent of our own stepping and stopping logic.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import solve_ivp

Array = NDArray[np.float64]


def _solve(rhs: object, x0: Array, t_max: float, rtol: float, atol: float) -> Array:
    sol = solve_ivp(rhs, (0.0, t_max), x0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    return np.asarray(sol.y[:, -1], dtype=np.float64)


def reference_forward(
    W: Array,
    inputs: Array,
    *,
    v0: float = 0.5,
    t_max: float = 50.0,
    rtol: float = 1e-9,
    atol: float = 1e-11,
) -> Array:
    """v(t_max) of dv/dt = -v + tanh(W v + I) for each input row, solved separately."""
    W = np.asarray(W, dtype=np.float64)
    I = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    out = np.empty_like(I)
    for b, i_b in enumerate(I):

        def rhs(_t: float, v: Array, i_b: Array = i_b) -> Array:
            return -v + np.tanh(W @ v + i_b)

        out[b] = _solve(rhs, np.full(W.shape[0], v0), t_max, rtol, atol)
    return out


def reference_side(
    W: Array,
    inputs: Array,
    v_inf: Array,
    targets: Array,
    *,
    y0: float = 0.5,
    t_max: float = 20.0,
    rtol: float = 1e-9,
    atol: float = 1e-11,
) -> Array:
    """y(t_max) of dy/dt = -y + g'(h) (W^T y + T - v_inf), h = W v_inf + I, per row."""
    W = np.asarray(W, dtype=np.float64)
    I = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    V = np.atleast_2d(np.asarray(v_inf, dtype=np.float64))
    T = np.broadcast_to(np.atleast_2d(np.asarray(targets, dtype=np.float64)), V.shape)
    out = np.empty_like(V)
    for b in range(V.shape[0]):
        gain = 1.0 - np.tanh(W @ V[b] + I[b % I.shape[0]]) ** 2
        J = T[b] - V[b]

        def rhs(_t: float, y: Array, gain: Array = gain, J: Array = J) -> Array:
            return -y + gain * (W.T @ y + J)

        out[b] = _solve(rhs, np.full(W.shape[0], y0), t_max, rtol, atol)
    return out
