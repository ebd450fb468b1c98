"""The software trainer: eq. 20 applied in floating point, one presentation at a time.

Two modes. `paper`: input = target = clean pattern (section IV of the paper). `denoising`:
input = the pattern corrupted with probability `p_train` (fresh noise every presentation),
target = the clean pattern, so the fixed point learns to undo the corruption it will meet at
test time. Both use `hil.network.learning.presentation_update`, the same code the in-situ trainer
calls, so for one seed the requested updates agree.

`train_stacked` trains S networks (one per pattern set, or per seed) in lockstep: each draws
from its own generator exactly as `train` does, and every relaxation step is one batched
product over all of them, so network s ends where `train` on its patterns and seed ends (up
to the rounding of batched products) at a fraction of the time of S separate runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hil.network.learning import (
    OUTCOMES,
    RuleConfig,
    band_mask,
    presentation_update,
    stacked_update,
)
from hil.network.patterns import corrupt

Array = NDArray[np.float64]


class TrainConfig(BaseModel):
    """What to train and how; defaults are the paper's (300 epochs, fixed order)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(default=300, ge=1)
    order: Literal["fixed", "shuffled"] = "fixed"
    mode: Literal["paper", "denoising"] = "paper"
    p_train: float = Field(default=0.0, ge=0.0, le=0.5, description="denoising corruption")
    copies: int = Field(
        default=1, ge=1, description="corrupted copies per presentation (denoising), averaged"
    )
    eta_decay: float = Field(
        default=0.0, ge=0.0, description="eta / (1 + eta_decay * epoch); 0 keeps eta fixed"
    )
    w_init: float = Field(default=0.1, ge=0.0, description="W0 symmetric U[-w_init, w_init]")
    seed: int = 0
    rule: RuleConfig = RuleConfig()

    @model_validator(mode="after")
    def _denoising_needs_noise(self) -> TrainConfig:
        if self.mode == "denoising" and self.p_train <= 0.0:
            raise ValueError("denoising mode needs p_train > 0")
        if self.mode == "paper" and (self.p_train != 0.0 or self.copies != 1):
            raise ValueError("paper mode trains on clean patterns: p_train = 0, copies = 1")
        return self


@dataclass(frozen=True)
class EpochStats:
    """One epoch of training, for the history and the progress line."""

    epoch: int
    loss: float
    max_abs_w: float
    refused: int  # samples left out of the updates (side diverged, forward unsettled)
    clipped: int  # presentations whose update was scaled down
    outcomes: dict[str, int] = field(default_factory=dict)  # per-sample guard outcomes


@dataclass(frozen=True)
class TrainResult:
    W: Array
    history: list[EpochStats] = field(default_factory=list)


def initial_weights(n: int, cfg: TrainConfig, rng: np.random.Generator) -> Array:
    """Symmetric W0 with entries U[-w_init, w_init] (the paper's 0.1), band-masked."""
    A = rng.uniform(-cfg.w_init, cfg.w_init, size=(n, n))
    W = np.triu(A) + np.triu(A, 1).T
    return np.where(band_mask(n, cfg.rule.band_radius), W, 0.0)


def train(
    patterns: Array,
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[EpochStats], object] | None = None,
) -> TrainResult:
    """Train W on the patterns; `on_epoch` sees every epoch's statistics (progress bars)."""
    P = np.asarray(patterns, dtype=np.float64)
    k, n = P.shape
    rng = np.random.default_rng(cfg.seed)
    W = initial_weights(n, cfg, rng)
    mask = band_mask(n, cfg.rule.band_radius)
    history: list[EpochStats] = []
    for epoch in range(cfg.epochs):
        eta = cfg.rule.eta / cfg.copies / (1.0 + cfg.eta_decay * epoch)
        rule = cfg.rule if eta == cfg.rule.eta else cfg.rule.model_copy(update={"eta": eta})
        order = rng.permutation(k) if cfg.order == "shuffled" else np.arange(k)
        loss, refused, clipped = 0.0, 0, 0
        outcomes = dict.fromkeys(OUTCOMES, 0)
        for idx in order:
            target = np.broadcast_to(P[idx], (cfg.copies, n))
            inputs = corrupt(target, cfg.p_train, rng) if cfg.mode == "denoising" else target
            upd = presentation_update(W, inputs, target, rule, mask=mask)
            W = W + upd.dW
            loss += upd.loss
            refused += upd.rejected
            clipped += int(upd.clipped)
            for key, count in upd.counts.items():
                outcomes[key] += count
        stats = EpochStats(
            epoch=epoch + 1,
            loss=loss / k,
            max_abs_w=float(np.abs(W).max()),
            refused=refused,
            clipped=clipped,
            outcomes=outcomes,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return TrainResult(W=W, history=history)


def train_stacked(
    patterns: Array,
    cfg: TrainConfig,
    *,
    seeds: Sequence[int] | None = None,
    on_epoch: Callable[[list[EpochStats]], object] | None = None,
) -> list[TrainResult]:
    """Train S networks in lockstep: patterns (S, K, N), one seed each (default cfg.seed).

    Network s draws W0, its epoch orders and its training corruption from
    `default_rng(seeds[s])` in the order `train` draws them, so it is `train(patterns[s],
    cfg with seed seeds[s])` computed alongside the others.
    """
    P = np.asarray(patterns, dtype=np.float64)
    if P.ndim != 3:
        raise ValueError(f"patterns have shape {P.shape}, expected (S, K, N)")
    S, k, n = P.shape
    seeds = [cfg.seed] * S if seeds is None else list(seeds)
    if len(seeds) != S:
        raise ValueError(f"{len(seeds)} seeds for {S} networks")
    rngs = [np.random.default_rng(seed) for seed in seeds]
    W = np.stack([initial_weights(n, cfg, rng) for rng in rngs])
    mask = band_mask(n, cfg.rule.band_radius)
    nets = np.arange(S)
    histories: list[list[EpochStats]] = [[] for _ in range(S)]
    for epoch in range(cfg.epochs):
        eta = cfg.rule.eta / cfg.copies / (1.0 + cfg.eta_decay * epoch)
        rule = cfg.rule if eta == cfg.rule.eta else cfg.rule.model_copy(update={"eta": eta})
        orders = np.stack(
            [rng.permutation(k) if cfg.order == "shuffled" else np.arange(k) for rng in rngs]
        )
        loss = np.zeros(S)
        refused = np.zeros(S, dtype=np.int64)
        clipped = np.zeros(S, dtype=np.int64)
        outcomes = np.zeros((S, len(OUTCOMES)), dtype=np.int64)
        for position in range(k):
            target = np.broadcast_to(P[nets, orders[:, position]][:, None, :], (S, cfg.copies, n))
            if cfg.mode == "denoising":
                inputs = np.stack(
                    [corrupt(target[s], cfg.p_train, rng) for s, rng in enumerate(rngs)]
                )
            else:
                inputs = target
            upd = stacked_update(W, inputs, target, rule, mask=mask)
            W = W + upd.dW
            loss += upd.loss
            refused += upd.rejected
            clipped += upd.clipped
            outcomes += upd.counts
        stats = [
            EpochStats(
                epoch=epoch + 1,
                loss=float(loss[s] / k),
                max_abs_w=float(np.abs(W[s]).max()),
                refused=int(refused[s]),
                clipped=int(clipped[s]),
                outcomes=dict(zip(OUTCOMES, (int(c) for c in outcomes[s]), strict=True)),
            )
            for s in range(S)
        ]
        for s in range(S):
            histories[s].append(stats[s])
        if on_epoch is not None:
            on_epoch(stats)
    return [TrainResult(W=W[s], history=histories[s]) for s in range(S)]
