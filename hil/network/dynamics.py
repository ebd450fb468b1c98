"""Relaxation of the forward network (eq. 18) and the side network (eq. 19), batched.

Both are integrated with fixed-step explicit Euler over a whole batch of samples at once,
stopping when every sample has settled (max |dx/dt| below a tolerance) or the time cap is
reached. dt = 0.5 is accurate for these contracting systems; dt = 1 is the plain fixed-point
iteration x <- F(x). `hil.network.reference` keeps `scipy.integrate.solve_ivp` as the reference.

Conventions: states are row vectors, shape (B, N); `W[i, j]` is the weight from unit j to
unit i, so the forward drive is `v @ W.T` and the side network's `W^T y` is `y @ W`.
"""

from __future__ import annotations

import contextlib
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


# -- S independent networks in lockstep ------------------------------------------------------
#
# Training several networks at once (one per pattern set, or per seed) is overhead-bound when
# each runs alone: a presentation is a few hundred tiny matrix products. Stacking them makes
# every Euler step one batched product over all networks. Rows keep their own stopping rule
# exactly as `_integrate` applies it (a settled row is frozen, not dropped, so the arrays stay
# rectangular), so network s follows the same trajectory as when it is relaxed alone.


def _integrate_stacked(x: Array, rhs: Callable[[Array], Array], cfg: RelaxConfig) -> Relaxation:
    """Euler-integrate dx/dt = -x + rhs(x) for x of shape (S, B, N), freezing settled rows."""
    steps = int(np.ceil(cfg.t_max / cfg.dt - 1e-12))
    dt, tol, bound = cfg.dt, cfg.tol, cfg.divergence_bound
    shape = x.shape[:-1]
    active = np.ones(shape, dtype=bool)
    residual = np.full(shape, np.inf)
    res = np.full(shape, np.inf)
    mid_residual = np.zeros(shape)
    t = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(steps):
            if not active.any():
                break
            if step == steps // 2:
                mid_residual[active] = res[active]
            deriv = rhs(x)
            deriv -= x
            step_res = np.abs(deriv).max(axis=-1)
            deriv *= dt
            deriv[~active] = 0.0
            x += deriv
            res = np.where(active, step_res, res)
            t += dt
            done = active & (
                (step_res < tol) | ~np.isfinite(step_res) | (np.abs(x).max(axis=-1) > bound)
            )
            residual[done] = step_res[done]
            active &= ~done
    residual[active] = res[active]
    finite = np.all(np.isfinite(x), axis=-1)
    diverged = ~finite | (np.abs(np.where(np.isfinite(x), x, np.inf)).max(axis=-1) > bound)
    converged = (residual < cfg.tol) & ~diverged
    growing = ~converged & ~diverged & (residual > mid_residual)
    return Relaxation(
        state=x, converged=converged, diverged=diverged, residual=residual, time=t, growing=growing
    )


def _stack(W: Array, x: Array, name: str) -> tuple[Array, Array]:
    Ws = np.asarray(W, dtype=np.float64)
    X = np.asarray(x, dtype=np.float64)
    if Ws.ndim != 3 or Ws.shape[1] != Ws.shape[2]:
        raise ValueError(f"weights have shape {Ws.shape}, expected (S, N, N)")
    if X.ndim != 3 or X.shape[0] != Ws.shape[0] or X.shape[2] != Ws.shape[1]:
        raise ValueError(f"{name} has shape {X.shape}, expected ({Ws.shape[0]}, B, {Ws.shape[1]})")
    return Ws, X


def relax_forward_stacked(
    W: Array, inputs: Array, *, v0: float = 0.5, cfg: RelaxConfig | None = None
) -> Relaxation:
    """`relax_forward` for S networks at once: W (S, N, N), inputs (S, B, N) -> state (S, B, N)."""
    cfg = cfg or RelaxConfig(t_max=50.0)
    Ws, I = _stack(W, inputs, "input")
    WT = np.ascontiguousarray(np.swapaxes(Ws, 1, 2))
    v = np.full(I.shape, float(v0))
    return _integrate_stacked(v, lambda va: np.tanh(va @ WT + I), cfg)


def side_gain(W: Array, inputs: Array, v_inf: Array) -> Array:
    """g'(h) at the forward fixed point, h = W v_inf + I (any leading shape, W broadcast)."""
    WT = np.swapaxes(np.asarray(W, dtype=np.float64), -1, -2)
    return np.asarray(1.0 - np.tanh(v_inf @ WT + inputs) ** 2)


def relax_side_stacked(
    W: Array,
    inputs: Array,
    v_inf: Array,
    targets: Array,
    *,
    y0: float = 0.5,
    cfg: RelaxConfig | None = None,
) -> Relaxation:
    """`relax_side` for S networks at once; all arrays carry the leading S axis."""
    cfg = cfg or RelaxConfig(t_max=20.0)
    Ws, I = _stack(W, inputs, "input")
    gain = side_gain(Ws, I, v_inf)
    J = np.asarray(targets, dtype=np.float64) - v_inf
    y = np.full(I.shape, float(y0))
    return _integrate_stacked(y, lambda ya: gain * (ya @ Ws + J), cfg)


def solve_side(W: Array, inputs: Array, v_inf: Array, targets: Array) -> Array:
    """The side network's fixed point y_inf by one linear solve instead of a relaxation.

    With v_inf frozen, eq. 19 is linear in y: dy/dt = -(I - D W^T) y + D J with
    D = diag(g'(h)), J = T - v_inf, so y_inf solves (I - D W^T) y = D J. Its stability is that
    of the forward fixed point: D W^T has the eigenvalues of (W D)^T, i.e. those of D W, the
    forward network's linearisation, so a forward network that settled on a stable fixed point
    has a stable side network whose limit is this solution, however slowly it is reached.
    W is (N, N) with rows (B, N), or (S, N, N) with (S, B, N).
    """
    Wa = np.asarray(W, dtype=np.float64)
    v = np.asarray(v_inf, dtype=np.float64)
    n = Wa.shape[-1]
    gain = side_gain(Wa, np.asarray(inputs, dtype=np.float64), v)
    rhs = gain * (np.asarray(targets, dtype=np.float64) - v)
    WT = np.swapaxes(Wa, -1, -2)
    if Wa.ndim == 3:
        WT = WT[:, None]  # one W per network, shared by its rows
    A = np.eye(n) - gain[..., :, None] * WT
    with np.errstate(all="ignore"):
        try:
            return np.asarray(np.linalg.solve(A, rhs[..., None])[..., 0])
        except np.linalg.LinAlgError:  # a singular row: solve one by one, NaN where singular
            flatA, flatb = A.reshape(-1, n, n), rhs.reshape(-1, n)
            out = np.full(flatb.shape, np.nan)
            for r in range(flatA.shape[0]):
                with contextlib.suppress(np.linalg.LinAlgError):
                    out[r] = np.linalg.solve(flatA[r], flatb[r])
            return out.reshape(rhs.shape)
