"""The paper's experiment end to end: train, evaluate every rule at every p, band sweep.

Table I analogue: Pineda–Almeida (eq. 20, trained in software), Hebbian and Storkey Hopfield
networks, and the nearest-pattern ceiling, each on the same corrupted test sets. Fig. 3
analogue: Pineda–Almeida retrained with W cut to the band |i - j| <= r, for each r. The
result is a plain dict, written as results.json by the command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hil.network import hopfield
from hil.network.evaluation import Scores, nearest_pattern, pineda_recall
from hil.network.float_training import EpochStats, TrainConfig, train
from hil.network.learning import RuleConfig
from hil.network.patterns import PatternSet, test_set

Array = NDArray[np.float64]

RULES: tuple[str, ...] = ("pineda_almeida", "hebbian", "storkey", "nearest_pattern")
EXAMPLES = 6  # corrupted -> reconstructed columns in the Fig. 5 analogue
#: Denoising mode relaxes this many fresh corrupted copies per presentation and applies their
#: mean eq. 20 update; a copy whose side network diverges is left out alone rather than
#: costing the whole presentation (docs/reproduction.md measures 1, 4, 8, 16 and 32).
DENOISING_COPIES = 16


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...


BarFactory = Callable[[str, int], AbstractContextManager[Bar]]


class _NullBar:
    def update(self, n: int = 1) -> None:
        return None


@contextmanager
def null_bar(_desc: str, _total: int) -> Iterator[Bar]:
    yield _NullBar()


class ReproduceConfig(BaseModel):
    """The experiment's knobs; defaults are the paper's."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(default=300, ge=1)
    samples: int = Field(default=1000, ge=1, description="corrupted samples per pattern")
    p_values: tuple[float, ...] = (0.10, 0.15, 0.20, 0.25)
    radii: tuple[int, ...] = ()
    train_noise: float | None = Field(default=None, gt=0.0, le=0.5)
    seed: int = 0

    @field_validator("p_values")
    @classmethod
    def _p_in_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("at least one corruption probability is needed")
        for p in v:
            if not 0.0 <= p <= 0.5:
                raise ValueError(f"p = {p} is outside [0, 0.5]")
        if len({pkey(p) for p in v}) != len(v):
            raise ValueError("corruption probabilities repeat (at two decimals)")
        return v

    @field_validator("radii")
    @classmethod
    def _radii_ok(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(r < 0 for r in v):
            raise ValueError("band radii must be >= 0")
        return tuple(sorted(set(v)))

    def train_config(self, band_radius: int | None = None) -> TrainConfig:
        rule = RuleConfig(band_radius=band_radius)
        if self.train_noise is None:
            return TrainConfig(epochs=self.epochs, seed=self.seed, rule=rule)
        return TrainConfig(
            epochs=self.epochs,
            seed=self.seed,
            rule=rule,
            mode="denoising",
            p_train=self.train_noise,
            copies=DENOISING_COPIES,
        )


def pkey(p: float) -> str:
    """Corruption probabilities are keyed with two decimals: 0.1 -> "0.10"."""
    return f"{p:.2f}"


def _train(
    ps: PatternSet, cfg: TrainConfig, desc: str, bar: BarFactory
) -> tuple[Array, list[EpochStats]]:
    with bar(desc, cfg.epochs) as b:
        result = train(ps.patterns, cfg, on_epoch=lambda _s: b.update(1))
    return result.W, result.history


def run(ps: PatternSet, cfg: ReproduceConfig, *, bar: BarFactory = null_bar) -> dict[str, Any]:
    """Run the whole experiment and return the results dict (see the module docstring)."""
    t_start = time.perf_counter()
    # Independent streams: test sets per p, and one each for the two Hopfield recalls and
    # the ceiling's tie-breaking, so no rule's draws shift another's.
    root = np.random.SeedSequence(cfg.seed)
    seeds = root.spawn(len(cfg.p_values) + 1)
    rngs = {
        rule: np.random.default_rng(s)
        for rule, s in zip(
            ("hebbian", "storkey", "nearest_pattern"), seeds[0].spawn(3), strict=True
        )
    }
    test_sets = [
        test_set(ps.patterns, cfg.samples, p, np.random.default_rng(s))
        for p, s in zip(cfg.p_values, seeds[1:], strict=True)
    ]

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    W_pa, history = _train(ps, cfg.train_config(), "train Pineda–Almeida", bar)
    timings["train_pineda_almeida_s"] = time.perf_counter() - t0
    weights = {"hebbian": hopfield.hebbian(ps.patterns), "storkey": hopfield.storkey(ps.patterns)}

    accuracy: dict[str, dict[str, float]] = {r: {} for r in RULES}
    exact: dict[str, dict[str, float]] = {r: {} for r in RULES}
    accuracy_01: dict[str, dict[str, float]] = {r: {} for r in RULES}
    per_class: dict[str, dict[str, list[float]]] = {r: {} for r in RULES}
    examples: dict[str, Any] = {}
    t0 = time.perf_counter()
    with bar("evaluate", len(cfg.p_values) * len(RULES)) as b:
        for p, (X, labels) in zip(cfg.p_values, test_sets, strict=True):
            clean = ps.patterns[labels]
            outputs = {
                "pineda_almeida": pineda_recall(W_pa, X).state,
                "hebbian": hopfield.recall(weights["hebbian"], X, rngs["hebbian"]).state,
                "storkey": hopfield.recall(weights["storkey"], X, rngs["storkey"]).state,
                "nearest_pattern": nearest_pattern(ps.patterns, X, rngs["nearest_pattern"]),
            }
            for rule in RULES:
                s = Scores.of(outputs[rule], clean, labels, ps.count)
                accuracy[rule][pkey(p)] = s.accuracy
                exact[rule][pkey(p)] = s.exact
                accuracy_01[rule][pkey(p)] = s.accuracy_01
                per_class[rule][pkey(p)] = s.per_class.tolist()
                b.update(1)
            if p == cfg.p_values[0]:
                pick = _example_rows(labels, ps.count, cfg.samples)
                examples = {
                    "p": pkey(p),
                    "labels": labels[pick].tolist(),
                    "corrupted": X[pick].tolist(),
                    **{rule: outputs[rule][pick].tolist() for rule in RULES[:3]},
                }
    timings["evaluate_s"] = time.perf_counter() - t0

    band: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for r in cfg.radii:
        W_r, _ = _train(ps, cfg.train_config(band_radius=r), f"band r={r}", bar)
        band[str(r)] = {
            pkey(p): Scores.of(
                pineda_recall(W_r, X).state, ps.patterns[lab], lab, ps.count
            ).accuracy
            for p, (X, lab) in zip(cfg.p_values, test_sets, strict=True)
        }
    timings["band_sweep_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start

    n = ps.size
    return {
        "accuracy": accuracy,
        "exact": exact,
        "band": band,
        "accuracy_01": accuracy_01,
        "config": {
            **cfg.model_dump(mode="json"),
            "mode": "denoising" if cfg.train_noise is not None else "paper",
            "copies_per_presentation": cfg.train_config().copies,
            "rule": RuleConfig().model_dump(mode="json"),
            "mse_threshold": 0.1,
        },
        "patterns": {
            "names": list(ps.names),
            "shape": list(ps.shape),
            "mean_correlation": float(
                (ps.correlation().sum() - ps.count) / max(ps.count * (ps.count - 1), 1)
            ),
            "synapses_per_radius": {
                str(r): int(n * n - max(n - 1 - r, 0) * max(n - r, 0)) for r in cfg.radii
            },
        },
        "per_class": per_class,
        "training": {
            "loss": [h.loss for h in history],
            "max_abs_w": [h.max_abs_w for h in history],
            "refused": int(sum(h.refused for h in history)),
            "clipped": int(sum(h.clipped for h in history)),
        },
        "examples": examples,
        "timing": timings,
    }


def _example_rows(labels: NDArray[np.intp], classes: int, samples: int) -> NDArray[np.intp]:
    """First sample of up to EXAMPLES classes spread over the set."""
    chosen = np.linspace(0, classes - 1, min(EXAMPLES, classes)).round().astype(int)
    return np.unique(chosen) * samples
