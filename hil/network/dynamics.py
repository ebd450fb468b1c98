"""Relaxation of the forward network (eq. 18) and the side network (eq. 19), batched.

Both are integrated with fixed-step explicit Euler over a whole batch of samples at once,
stopping when every sample has settled (max |dx/dt| below a tolerance) or the time cap is
reached. dt = 0.5 is accurate for these contracting systems; dt = 1 is the plain fixed-point
iteration x <- F(x). `hil.network.reference` keeps `scipy.integrate.solve_ivp` as the reference.

Conventions: states are row vectors, shape (B, N); `W[i, j]` is the weight from unit j to
unit i, so the forward drive is `v @ W.T` and the side network's `W^T y` is `y @ W`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

Array = NDArray[np.float64]


class RelaxConfig(BaseModel):
    """Integration settings for one relaxation."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dt: float = Field(default=0.5, gt=0.0, le=1.0, description="Euler step (1.0 = fixed-point)")
    t_max: float = Field(default=50.0, gt=0.0, description="time cap (paper: v 50, y 20)")
    tol: float = Field(default=1e-6, gt=0.0, description="settled when max|dx/dt| < tol")
    divergence_bound: float = Field(
        default=1e3, gt=0.0, description="|state| above this counts as diverged"
    )


@dataclass(frozen=True)
class Relaxation:
    """Result of relaxing a batch: final states and per-sample diagnostics."""

    state: Array
    converged: NDArray[np.bool_]
    diverged: NDArray[np.bool_]
    residual: Array
    time: float
    #: Unsettled at t_max with a larger residual than at t_max / 2: moving away, not settling.
    growing: NDArray[np.bool_]


def _as_batch(x: Array | float, batch: int, n: int, name: str) -> Array:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        return np.full((batch, n), float(arr))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape[-1] != n:
        raise ValueError(f"{name} has {arr.shape[-1]} units, the network has {n}")
    return np.broadcast_to(arr, (batch, n)).copy()


def _integrate(
    x: Array, rhs: Callable[..., Array], consts: tuple[Array, ...], cfg: RelaxConfig
) -> Relaxation:
    """Euler-integrate dx/dt = -x + rhs(x, *consts) row-wise, in place in `x`.

    Rows that settle (or blow up) leave the working set together with their rows of
    `consts`, so later steps cost only what the unsettled rows cost and no step gathers.
    """
    steps = int(np.ceil(cfg.t_max / cfg.dt - 1e-12))
    dt, tol, bound = cfg.dt, cfg.tol, cfg.divergence_bound
    residual = np.full(x.shape[0], np.inf)
    rows = np.arange(x.shape[0])
    xa, ca = x, consts
    res = np.full(x.shape[0], np.inf)
    mid_residual = np.zeros(x.shape[0])
    t = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(steps):
            if rows.size == 0:
                break
            if step == steps // 2:
                mid_residual[rows] = res
            deriv = rhs(xa, *ca)
            deriv -= xa
            res = np.abs(deriv).max(axis=1)
            deriv *= dt
            xa += deriv
            t += dt
            done = (res < tol) | ~np.isfinite(res) | (np.abs(xa).max(axis=1) > bound)
            if done.any():
                finished = rows[done]
                residual[finished] = res[done]
                x[finished] = xa[done]
                keep = ~done
                rows, xa, res = rows[keep], xa[keep], res[keep]
                ca = tuple(c[keep] for c in ca)
    if rows.size:
        residual[rows] = res
        x[rows] = xa
    finite = np.all(np.isfinite(x), axis=1)
    diverged = ~finite | (
        np.abs(np.where(np.isfinite(x), x, np.inf)).max(axis=1) > cfg.divergence_bound
    )
    converged = (residual < cfg.tol) & ~diverged
    growing = ~converged & ~diverged & (residual > mid_residual)
    return Relaxation(
        state=x,
        converged=converged,
        diverged=diverged,
        residual=residual,
        time=t,
        growing=growing,
    )


def _forward_rhs(v: Array, I: Array, WT: Array) -> Array:
    return np.tanh(v @ WT + I)


def _side_rhs(y: Array, gain: Array, J: Array, W: Array) -> Array:
    return gain * (y @ W + J)


def relax_forward(
    W: Array, inputs: Array, *, v0: Array | float = 0.5, cfg: RelaxConfig | None = None
) -> Relaxation:
    """Relax dv/dt = -v + tanh(W v + I) from v0 for every input row (eq. 18)."""
    cfg = cfg or RelaxConfig(t_max=50.0)
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[0]
    I = _as_batch(inputs, np.atleast_2d(inputs).shape[0], n, "input")
    v = _as_batch(v0, I.shape[0], n, "v0")
    WT = np.ascontiguousarray(W.T)
    return _integrate(v, lambda va, Ia: _forward_rhs(va, Ia, WT), (I,), cfg)


def relax_side(
    W: Array,
    inputs: Array,
    v_inf: Array,
    targets: Array,
    *,
    y0: Array | float = 0.5,
    cfg: RelaxConfig | None = None,
) -> Relaxation:
    """Relax dy/dt = -y + g'(h) (W^T y + J) with h = W v_inf + I, J = T - v_inf (eq. 19)."""
    cfg = cfg or RelaxConfig(t_max=20.0)
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[0]
    v = np.atleast_2d(np.asarray(v_inf, dtype=np.float64))
    I = _as_batch(inputs, v.shape[0], n, "input")
    T = _as_batch(targets, v.shape[0], n, "target")
    gain = 1.0 - np.tanh(v @ W.T + I) ** 2
    J = T - v
    y = _as_batch(y0, v.shape[0], n, "y0")
    return _integrate(y, lambda ya, ga, Ja: _side_rhs(ya, ga, Ja, W), (gain, J), cfg)
