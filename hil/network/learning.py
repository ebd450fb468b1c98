"""The Pineda–Almeida update (eq. 20) for one presentation, with its guards.

One presentation relaxes the forward network to v_inf, finds the side network's fixed point
y_inf (by relaxing eq. 19 over its span, as the paper does, or by one exact linear solve), and
asks for dW = eta * t_w * y_inf v_inf^T (symmetrised and band-masked when configured). This is
exactly -eta * t_w * dE/dW for E = 1/2 |T - v_inf|^2. The float trainer and the in-situ
trainer both call `presentation_update`, so their updates agree for one seed.

Guards, per sample of a presentation (a batch of corrupted copies loses only its bad samples):

- not a gradient, always left out: a forward network that has not settled, a side network
  that diverges (grows), a non-finite state;
- large updates, as `update_guard` says: `clip` (the default) scales a sample whose
  |y v^T|_max exceeds `max_grad` (default 1) down to that max-norm: a stated per-sample
  max-norm clip of dW, |dW_ij| <= eta * t_w * max_grad per sample. `filter` leaves such a
  sample out (a magnitude filter, named as such). `settle` (the guard before these existed,
  kept for the paper mode of `reproduce`) leaves out a sample whose side network is still
  moving at the end of its span. That is a magnitude filter in disguise: y(t) approaches
  y_inf like exp(-(1 - lambda) t), so only the samples with a large y_inf (lambda, the forward
  linearisation's top eigenvalue, near 1) are still moving at t = 20, and their y(20) is
  close to y_inf. `none` accepts every gradient. docs/reproduction.md measures each one.

Outcomes are counted per sample (`UpdateResult.counts`), not logged one by one: a denoising
run meets thousands of them, and its summary reports the counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hil.network.dynamics import (
    Relaxation,
    RelaxConfig,
    relax_forward,
    relax_forward_stacked,
    relax_side,
    relax_side_stacked,
    solve_side,
)

Array = NDArray[np.float64]
log = logging.getLogger(__name__)

UpdateStatus = Literal[
    "ok", "forward_not_settled", "side_not_settled", "side_diverged", "non_finite", "large_update"
]
#: Per-sample outcomes, in the order that decides a presentation's status (first bad one wins).
BAD_OUTCOMES: tuple[UpdateStatus, ...] = (
    "non_finite",
    "side_diverged",
    "side_not_settled",
    "forward_not_settled",
    "large_update",
)
#: Keys of `UpdateResult.counts`: every outcome, plus the samples scaled down by `clip`.
OUTCOMES: tuple[str, ...] = ("ok", *BAD_OUTCOMES, "clipped")


class RuleConfig(BaseModel):
    """Settings of the learning rule; defaults are the paper's (section IV)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    eta: float = Field(default=0.01, gt=0.0)
    t_w: float = Field(default=3.0, gt=0.0, description="time span of the W dynamics")
    v0: float = 0.5
    y0: float = 0.5
    forward: RelaxConfig = RelaxConfig(t_max=50.0)
    side: RelaxConfig = RelaxConfig(t_max=20.0)
    symmetric: bool = True
    band_radius: int | None = Field(default=None, ge=0, description="keep |i-j| <= r")
    side_solver: Literal["relax", "exact"] = Field(
        default="relax",
        description="relax: integrate eq. 19 over its span (the paper); exact: solve the "
        "linear system (I - D W^T) y = D J for its fixed point",
    )
    update_guard: Literal["settle", "filter", "clip", "none"] = Field(
        default="clip",
        description="large updates: settle = leave out a sample whose side network is still "
        "moving at t_max (relax only); filter = leave out a sample with |y v^T|_max > max_grad; "
        "clip = scale it to max_grad; none = accept every gradient",
    )
    max_grad: float = Field(
        default=1.0, gt=0.0, description="threshold of filter/clip on |y_inf v_inf^T|_max"
    )
    on_bad_update: Literal["refuse", "clip"] = "refuse"
    clip_abs_dw: float = Field(default=0.05, gt=0.0, description="max |dW| entry when clipping")
    require_forward_settled: bool = True
    forward_settle_tol: float = Field(
        default=1e-3, gt=0.0, description="max |dv/dt| accepted at t_max as settled"
    )
    side_settle_tol: float = Field(
        default=1e-3,
        gt=0.0,
        description="max |dy/dt| accepted at t_max by the settle guard (a slow but contracting "
        "side network below it is still counted as settled)",
    )

    @model_validator(mode="after")
    def _settle_needs_relaxation(self) -> RuleConfig:
        if self.update_guard == "settle" and self.side_solver == "exact":
            raise ValueError(
                "update_guard 'settle' judges the side relaxation; with side_solver 'exact' "
                "use 'filter', 'clip' or 'none'"
            )
        return self


@dataclass(frozen=True)
class UpdateResult:
    """The requested dW of one presentation and what it was computed from."""

    dW: Array
    v_inf: Array
    y_inf: Array
    loss: float
    status: UpdateStatus
    accepted: bool
    clipped: bool
    rejected: int = 0  # samples of a batch left out of dW
    counts: dict[str, int] = field(default_factory=dict)  # per-sample outcomes (OUTCOMES)


@dataclass(frozen=True)
class StackedUpdate:
    """`UpdateResult` for S networks updated in lockstep; arrays carry the leading S axis."""

    dW: Array  # (S, N, N)
    v_inf: Array  # (S, B, N)
    y_inf: Array
    loss: Array  # (S,)
    status: tuple[UpdateStatus, ...]
    accepted: NDArray[np.bool_]
    clipped: NDArray[np.bool_]
    rejected: NDArray[np.int64]
    counts: NDArray[np.int64]  # (S, len(OUTCOMES))

    def result(self, s: int) -> UpdateResult:
        """Network s's update as `presentation_update` would return it."""
        return UpdateResult(
            dW=self.dW[s],
            v_inf=self.v_inf[s],
            y_inf=self.y_inf[s],
            loss=float(self.loss[s]),
            status=self.status[s],
            accepted=bool(self.accepted[s]),
            clipped=bool(self.clipped[s]),
            rejected=int(self.rejected[s]),
            counts=dict(zip(OUTCOMES, (int(c) for c in self.counts[s]), strict=True)),
        )


def band_mask(n: int, radius: int | None) -> NDArray[np.bool_]:
    """True where |i - j| <= radius (everything when radius is None)."""
    if radius is None:
        return np.ones((n, n), dtype=bool)
    i, j = np.indices((n, n))
    return np.abs(i - j) <= radius


def raw_update(y_inf: Array, v_inf: Array) -> Array:
    """Sum over the batch of y_inf v_inf^T: the unscaled eq. 20 direction (= -dE/dW)."""
    return np.atleast_2d(y_inf).T @ np.atleast_2d(v_inf)


def _guarded(
    v: Array,
    y: Array,
    fwd: Relaxation,
    side: Relaxation | None,
    targets: Array,
    cfg: RuleConfig,
    mask: NDArray[np.bool_] | None,
) -> StackedUpdate:
    """Classify every sample, weight the kept ones and sum their updates, per network.

    Arrays are (S, B, N); `side` is None for the exact solve (nothing to judge but finiteness).
    """
    S, B, n = v.shape
    loss = 0.5 * np.sum((targets - v) ** 2, axis=(1, 2)) / B
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.all(np.isfinite(v), axis=-1) & np.all(np.isfinite(y), axis=-1)
        size = np.abs(y).max(axis=-1) * np.abs(v).max(axis=-1)  # = |y v^T|_max
    none = np.zeros((S, B), dtype=bool)
    growing = side.diverged | side.growing if side is not None else none
    unsettled = ~growing & ~(side.residual < cfg.side_settle_tol) if side is not None else none
    fwd_bad = ~(fwd.residual < cfg.forward_settle_tol) if cfg.require_forward_settled else ~finite
    too_large = finite & (size > cfg.max_grad)
    flags = {
        "non_finite": ~finite,
        "side_diverged": finite & growing,
        "side_not_settled": finite & unsettled,
        "forward_not_settled": finite & fwd_bad,
        "large_update": too_large,
    }
    excluded = {
        "non_finite": True,
        "side_diverged": True,
        "side_not_settled": cfg.update_guard == "settle",
        "forward_not_settled": True,
        "large_update": cfg.update_guard == "filter",
    }
    outcome = np.full((S, B), -1)  # index into BAD_OUTCOMES of each excluded sample's reason
    bad: NDArray[np.bool_] = np.zeros((S, B), dtype=bool)
    for name in BAD_OUTCOMES:
        if excluded[name]:
            bad |= flags[name]
    status: list[UpdateStatus] = ["ok"] * S
    if bad.any():  # the common case (nothing to leave out) skips the bookkeeping
        for k, name in enumerate(BAD_OUTCOMES):
            if excluded[name]:
                outcome = np.where((outcome < 0) & flags[name], k, outcome)
        for s in range(S):
            codes = outcome[s][bad[s]]
            if codes.size:
                status[s] = BAD_OUTCOMES[int(codes.min())]

    # Rows that contribute: the good ones (refuse), or every finite one of a presentation with
    # a bad sample, scaled down afterwards as a whole (on_bad_update = clip).
    any_bad: NDArray[np.bool_] = np.asarray(bad.any(axis=1))
    rows: NDArray[np.bool_] = np.where(
        any_bad[:, None], finite if cfg.on_bad_update == "clip" else ~bad, True
    )
    weight = rows.astype(np.float64)
    scaled = np.zeros((S, B), dtype=bool)
    if cfg.update_guard == "clip":
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(rows & too_large, cfg.max_grad / size, 1.0)
        scaled = factor < 1.0
        weight = weight * factor
    if rows.all():
        yw, vk = y * weight[..., None] if cfg.update_guard == "clip" else y, v
    else:  # left-out rows may hold NaN: zero them rather than multiply by a zero weight
        yw = np.where(rows[..., None], y, 0.0) * weight[..., None]
        vk = np.where(rows[..., None], v, 0.0)
    dW = np.matmul(np.swapaxes(yw, 1, 2), vk)  # sum over the batch of y v^T, per network
    dW *= cfg.eta * cfg.t_w
    if cfg.symmetric:
        dW += np.swapaxes(dW, 1, 2)
        dW *= 0.5
    if mask is None and cfg.band_radius is not None:
        mask = band_mask(n, cfg.band_radius)
    if mask is not None and not mask.all():
        dW = np.where(mask, dW, 0.0)

    accepted: NDArray[np.bool_] = np.asarray(rows.any(axis=1))
    clipped: NDArray[np.bool_] = np.asarray(scaled.any(axis=1))
    if cfg.on_bad_update == "clip":
        peak = np.abs(dW).max(axis=(1, 2))
        squeeze = accepted & any_bad & (peak > cfg.clip_abs_dw)
        with np.errstate(divide="ignore", invalid="ignore"):
            dW = dW * np.where(squeeze, cfg.clip_abs_dw / peak, 1.0)[:, None, None]
        clipped |= squeeze
    counts = np.zeros((S, len(OUTCOMES)), dtype=np.int64)
    counts[:, 0] = B - bad.sum(axis=1)
    if any_bad.any():
        for k in range(len(BAD_OUTCOMES)):
            counts[:, 1 + k] = (outcome == k).sum(axis=1)
    counts[:, -1] = scaled.sum(axis=1)
    return StackedUpdate(
        dW=dW,
        v_inf=v,
        y_inf=y,
        loss=loss,
        status=tuple(status),
        accepted=accepted,
        clipped=clipped,
        rejected=(~rows).sum(axis=1),
        counts=counts,
    )


def presentation_update(
    W: Array,
    inputs: Array,
    targets: Array,
    cfg: RuleConfig,
    *,
    mask: NDArray[np.bool_] | None = None,
) -> UpdateResult:
    """Relax both networks for a presentation (or a batch, updates summed) and return dW."""
    W = np.asarray(W, dtype=np.float64)
    fwd = relax_forward(W, inputs, v0=cfg.v0, cfg=cfg.forward)
    v = fwd.state
    T = np.broadcast_to(np.atleast_2d(np.asarray(targets, dtype=np.float64)), v.shape)
    side: Relaxation | None
    if cfg.side_solver == "exact":
        I = np.broadcast_to(np.atleast_2d(np.asarray(inputs, dtype=np.float64)), v.shape)
        side, y = None, solve_side(W, I, v, T)
    else:
        side = relax_side(W, inputs, v, T, y0=cfg.y0, cfg=cfg.side)
        y = side.state
    stacked = _guarded(
        v[None], y[None], _lift(fwd), _lift(side) if side else None, T[None], cfg, mask
    )
    res = stacked.result(0)
    if not res.accepted:
        log.debug("update %s: refused (no weight change)", res.status)
    return res


def _lift(r: Relaxation) -> Relaxation:
    """A single relaxation as network 0 of a stack."""
    return Relaxation(
        state=r.state[None],
        converged=r.converged[None],
        diverged=r.diverged[None],
        residual=r.residual[None],
        time=r.time,
        growing=r.growing[None],
    )


def stacked_update(
    W: Array,
    inputs: Array,
    targets: Array,
    cfg: RuleConfig,
    *,
    mask: NDArray[np.bool_] | None = None,
) -> StackedUpdate:
    """`presentation_update` for S networks at once: W (S, N, N), inputs/targets (S, B, N).

    Network s gets the update `presentation_update(W[s], inputs[s], targets[s])` returns, up
    to the rounding of batched matrix products.
    """
    fwd = relax_forward_stacked(W, inputs, v0=cfg.v0, cfg=cfg.forward)
    v = fwd.state
    T = np.broadcast_to(np.asarray(targets, dtype=np.float64), v.shape)
    side: Relaxation | None
    if cfg.side_solver == "exact":
        side, y = None, solve_side(W, inputs, v, T)
    else:
        side = relax_side_stacked(W, inputs, v, T, y0=cfg.y0, cfg=cfg.side)
        y = side.state
    return _guarded(v, y, fwd, side, T, cfg, mask)
