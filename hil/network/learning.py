"""The Pineda–Almeida update (eq. 20) for one presentation, with guards.

One presentation relaxes the forward network to v_inf, the side network to y_inf, and asks
for dW = eta * t_w * y_inf v_inf^T (symmetrised and band-masked when configured). This is
exactly -eta * t_w * dE/dW for E = 1/2 |T - v_inf|^2. The float trainer and the in-situ
trainer both call `presentation_update`, so their updates agree for one seed.

An update computed from a forward network that has not settled, or from a side network that
diverged, is not a gradient: it is refused (or clipped, as configured) and logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from hil.network.dynamics import RelaxConfig, relax_forward, relax_side

Array = NDArray[np.float64]
log = logging.getLogger(__name__)

UpdateStatus = Literal[
    "ok", "forward_not_settled", "side_not_settled", "side_diverged", "non_finite"
]


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
    on_bad_update: Literal["refuse", "clip"] = "refuse"
    clip_abs_dw: float = Field(default=0.05, gt=0.0, description="max |dW| entry when clipping")
    require_forward_settled: bool = True
    forward_settle_tol: float = Field(
        default=1e-3, gt=0.0, description="max |dv/dt| accepted at t_max as settled"
    )
    side_settle_tol: float = Field(
        default=1e-3,
        gt=0.0,
        description="max |dy/dt| accepted at t_max; above it the side network counts as "
        "diverging (a slow but contracting side network is still a gradient)",
    )


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
    rejected: int = 0  # samples of a batch left out of dW (refused or non-finite)


def band_mask(n: int, radius: int | None) -> NDArray[np.bool_]:
    """True where |i - j| <= radius (everything when radius is None)."""
    if radius is None:
        return np.ones((n, n), dtype=bool)
    i, j = np.indices((n, n))
    return np.abs(i - j) <= radius


def raw_update(y_inf: Array, v_inf: Array) -> Array:
    """Sum over the batch of y_inf v_inf^T: the unscaled eq. 20 direction (= -dE/dW)."""
    return np.atleast_2d(y_inf).T @ np.atleast_2d(v_inf)


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
    side = relax_side(W, inputs, v, targets, y0=cfg.y0, cfg=cfg.side)
    y = side.state
    loss = float(0.5 * np.sum((np.atleast_2d(targets) - v) ** 2) / v.shape[0])

    finite = np.all(np.isfinite(v), axis=1) & np.all(np.isfinite(y), axis=1)
    side_growing = side.diverged | side.growing
    side_unsettled = ~side_growing & ~(side.residual < cfg.side_settle_tol)
    side_bad = side_growing | side_unsettled
    fwd_bad = ~(fwd.residual < cfg.forward_settle_tol) if cfg.require_forward_settled else ~finite
    status: UpdateStatus = "ok"
    if not finite.all():
        status = "non_finite"
    elif side_growing.any():
        status = "side_diverged"
    elif side_unsettled.any():
        # Still moving at the end of its span: y is no fixed point, so y v^T is no gradient.
        status = "side_not_settled"
    elif fwd_bad.any():
        status = "forward_not_settled"

    # Rows that contribute: all of them when every sample is fine; otherwise the good ones
    # (refuse) or every finite one, scaled down afterwards (clip). A single bad presentation
    # is thus refused or clipped as a whole; a batch loses only its bad samples.
    if status == "ok":
        rows = np.ones(v.shape[0], dtype=bool)
    elif cfg.on_bad_update == "refuse":
        rows = finite & ~side_bad & ~fwd_bad
    else:
        rows = finite
    n = W.shape[0]
    dW = cfg.eta * cfg.t_w * raw_update(y[rows], v[rows])
    if cfg.symmetric:
        dW = 0.5 * (dW + dW.T)
    if mask is None and cfg.band_radius is not None:
        mask = band_mask(n, cfg.band_radius)
    if mask is not None:
        dW = np.where(mask, dW, 0.0)

    accepted, clipped = bool(rows.any()), False
    rejected = int((~rows).sum())
    if status != "ok":
        if not accepted:
            log.warning("update %s: refused (no weight change)", status)
        elif cfg.on_bad_update == "clip":
            peak = float(np.abs(dW).max())
            if peak > cfg.clip_abs_dw:
                dW = dW * (cfg.clip_abs_dw / peak)
                clipped = True
            log.warning("update %s: clipped to max|dW| <= %g", status, cfg.clip_abs_dw)
        else:
            log.warning("update %s: refused for %d of %d samples", status, rejected, v.shape[0])
    return UpdateResult(
        dW=dW,
        v_inf=v,
        y_inf=y,
        loss=loss,
        status=status,
        accepted=accepted,
        clipped=clipped,
        rejected=rejected,
    )
