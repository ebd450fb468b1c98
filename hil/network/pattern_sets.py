"""Many pattern sets instead of one: random draws under a stated rule, and a score-free choice.

A single set of 16 letters says little about a learning rule: on the 26-letter font Storkey's
accuracy moves by tenths from one subset to the next. So Table I is reported over K sets:

- `letters` family: K subsets of `size` patterns drawn uniformly at random from a source set
  (the 26-letter font, or the user's file), redrawn until every pair differs in at least
  `min_distance` pixels (rejection sampling keeps the draw uniform over the sets that meet the
  rule). Letters of a set keep the source's order.
- `random` family: `size` patterns with independent pixels, each on with the source's mean
  on-pixel density, under the same distance rule: no shared strokes, so nothing rests on
  letters alone.

The built-in set is chosen by `least_correlated`, which looks at the patterns only, never at a
learning rule's score.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from hil.network.patterns import PatternSet
from protocols.errors import InputError

Array = NDArray[np.float64]
Family = Literal["letters", "random"]

#: Draws per requested set before the rule is declared unsatisfiable for the source.
MAX_TRIES_PER_SET = 2000


@dataclass(frozen=True)
class DrawRule:
    """Which sets may be drawn: `size` patterns, every pair at least `min_distance` apart."""

    size: int = 16
    min_distance: int = 8

    def text(self) -> str:
        return f"{self.size} patterns, every pair differing in at least {self.min_distance} pixels"


def distances(patterns: Array) -> NDArray[np.int64]:
    """Pairwise Hamming distances between ±1 patterns (K, K)."""
    P = np.asarray(patterns, dtype=np.float64)
    return np.rint(0.5 * (P.shape[1] - P @ P.T)).astype(np.int64)


def min_distance(patterns: Array) -> int:
    """The smallest Hamming distance between two different patterns of the set."""
    D = distances(patterns)
    k = D.shape[0]
    return int(D[~np.eye(k, dtype=bool)].min()) if k > 1 else int(np.asarray(patterns).shape[1])


def density(ps: PatternSet) -> float:
    """Fraction of on (+1) pixels over the whole set."""
    return float((ps.patterns > 0).mean())


def mean_correlation(ps: PatternSet) -> float:
    """Mean Pearson correlation over the distinct pairs."""
    k = ps.count
    C = ps.correlation()
    return float((C.sum() - k) / max(k * (k - 1), 1))


def max_correlation(ps: PatternSet) -> float:
    k = ps.count
    C = ps.correlation()
    return float(C[~np.eye(k, dtype=bool)].max()) if k > 1 else 0.0


def draw_letters(
    source: PatternSet, count: int, rule: DrawRule, rng: np.random.Generator
) -> list[PatternSet]:
    """`count` random subsets of `source` that meet `rule` (uniform over such subsets)."""
    if rule.size > source.count:
        raise InputError(
            f"a set of {rule.size} patterns cannot be drawn from {source.count} patterns"
        )
    D = distances(source.patterns)
    sets: list[PatternSet] = []
    tries = 0
    while len(sets) < count:
        tries += 1
        if tries > MAX_TRIES_PER_SET * count:
            raise InputError(
                f"no subset meeting the rule ({rule.text()}) found in {tries - 1} draws "
                f"from {source.count} patterns"
            )
        idx = np.sort(rng.choice(source.count, rule.size, replace=False))
        sub = D[np.ix_(idx, idx)]
        if rule.size > 1 and sub[~np.eye(rule.size, dtype=bool)].min() < rule.min_distance:
            continue
        sets.append(source.subset([source.names[i] for i in idx]))
    return sets


def draw_random(
    source: PatternSet, count: int, rule: DrawRule, rng: np.random.Generator
) -> list[PatternSet]:
    """`count` sets of random ±1 patterns at the source's on-pixel density, meeting `rule`."""
    p_on = density(source)
    names = tuple(f"r{i}" for i in range(rule.size))
    sets: list[PatternSet] = []
    tries = 0
    while len(sets) < count:
        tries += 1
        if tries > MAX_TRIES_PER_SET * count:
            raise InputError(
                f"no random set meeting the rule ({rule.text()}) found in {tries - 1} draws "
                f"at density {p_on:.3f} on {source.size} pixels"
            )
        P = np.where(rng.random((rule.size, source.size)) < p_on, 1.0, -1.0)
        if min_distance(P) < rule.min_distance:
            continue
        sets.append(PatternSet(patterns=P, names=names, shape=source.shape))
    return sets


def draw_sets(
    source: PatternSet, family: Family, count: int, rule: DrawRule, seed: int
) -> list[PatternSet]:
    """The K sets of a run, from a stream of their own (independent of training and tests)."""
    if count < 1:
        raise InputError(f"--pattern-sets: need at least one set (got {count})")
    rng = np.random.default_rng([seed, 0x5E75])  # a stream the experiment's spawns never use
    draw = draw_letters if family == "letters" else draw_random
    return draw(source, count, rule, rng)


def least_correlated(ps: PatternSet, k: int) -> tuple[str, ...]:
    """The k patterns whose largest pairwise Pearson correlation is smallest.

    Exact: the smallest threshold t for which the patterns correlated above t can be cut to
    an independent set of k (the rest, n - k patterns, cover every such pair) is found by
    bisection over the distinct correlations; the covers are enumerated by branching on an
    uncovered pair (every cover holds one of its two ends). Ties between the sets that reach
    t are broken by the smallest mean correlation, then by the source order. Names are
    returned in the source's order.
    """
    n = ps.count
    if not 1 <= k <= n:
        raise InputError(f"cannot choose {k} of {n} patterns")
    C = ps.correlation()
    iu, ju = np.triu_indices(n, 1)
    values = np.unique(C[iu, ju])
    budget = n - k

    def covers(t: float, first: bool) -> list[frozenset[int]]:
        pairs = [(int(i), int(j)) for i, j in zip(iu, ju, strict=True) if C[i, j] > t]
        found: list[frozenset[int]] = []

        def grow(cover: frozenset[int], left: int) -> None:
            if first and found:
                return
            for i, j in pairs:
                if i not in cover and j not in cover:
                    if left:
                        grow(cover | {i}, left - 1)
                        grow(cover | {j}, left - 1)
                    return
            found.append(cover)

        grow(frozenset(), budget)
        return found

    lo, hi = 0, len(values) - 1
    if k == 1 or not len(values):
        return (ps.names[0],)
    while lo < hi:
        mid = (lo + hi) // 2
        if covers(float(values[mid]), first=True):
            hi = mid
        else:
            lo = mid + 1
    chosen: set[tuple[int, ...]] = set()
    for cover in covers(float(values[lo]), first=False):
        rest = [i for i in range(n) if i not in cover]
        for drop in itertools.combinations(rest, len(rest) - k):
            chosen.add(tuple(sorted(set(rest) - set(drop))))

    def mean_corr(idx: tuple[int, ...]) -> float:
        sub = C[np.ix_(idx, idx)]
        return float((sub.sum() - k) / (k * (k - 1)))

    best = min(chosen, key=lambda idx: (round(mean_corr(idx), 12), idx))
    return tuple(ps.names[i] for i in best)


def summary(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max."""
    x = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min": float(x.min()),
        "max": float(x.max()),
    }


def to_text(ps: PatternSet) -> str:
    """The set as a text grid (`[name]`, `#` on, `.` off), readable by `load_patterns`."""
    blocks = []
    for name, image in zip(ps.names, ps.images(), strict=True):
        rows = ["".join("#" if x > 0 else "." for x in row) for row in image]
        blocks.append("\n".join([f"[{name}]", *rows]))
    return "\n\n".join(blocks) + "\n"
