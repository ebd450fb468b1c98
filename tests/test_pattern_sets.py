"""Pattern sets: the score-free choice of the built-in set, random draws under a rule, summaries."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from hil.network.font import BUILTIN_LETTERS, LETTERS26_TEXT
from hil.network.pattern_sets import (
    DrawRule,
    density,
    distances,
    draw_sets,
    least_correlated,
    max_correlation,
    mean_correlation,
    min_distance,
    summary,
    to_text,
)
from hil.network.patterns import PatternSet, builtin_patterns, letters26, parse_text
from protocols.errors import InputError

FONT_FILE = Path(__file__).parents[1] / "docs" / "patterns" / "letters26.txt"


def random_set(k: int, n: int, seed: int) -> PatternSet:
    P = np.where(np.random.default_rng(seed).random((k, n)) < 0.5, 1.0, -1.0)
    return PatternSet(patterns=P, names=tuple(f"q{i}" for i in range(k)), shape=(1, n))


def test_the_docs_font_file_is_the_packaged_font() -> None:
    assert FONT_FILE.read_text(encoding="utf-8") == LETTERS26_TEXT
    font = letters26()
    assert font.count == 26 and font.shape == (10, 10)
    assert font.names == tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_builtin_set_is_the_least_correlated_sixteen_letters_of_the_font() -> None:
    font = letters26()
    assert least_correlated(font, 16) == BUILTIN_LETTERS
    ps = builtin_patterns()
    assert ps.names == BUILTIN_LETTERS and ps.count == 16
    np.testing.assert_array_equal(ps.patterns, font.subset(BUILTIN_LETTERS).patterns)
    # the rule's optimum: no other 16 letters have a smaller largest correlation; check the
    # 26 * 10 sets one swap away (a cheap necessary condition of the exact search)
    best = max_correlation(ps)
    rest = [n for n in font.names if n not in BUILTIN_LETTERS]
    for out, into in itertools.product(BUILTIN_LETTERS, rest):
        swapped = tuple(sorted((set(BUILTIN_LETTERS) - {out}) | {into}))
        assert max_correlation(font.subset(swapped)) >= best - 1e-12


@pytest.mark.parametrize(("n_patterns", "k", "seed"), [(8, 4, 0), (9, 5, 1), (10, 3, 2)])
def test_least_correlated_matches_brute_force(n_patterns: int, k: int, seed: int) -> None:
    ps = random_set(n_patterns, 24, seed)
    C = ps.correlation()

    def key(idx: tuple[int, ...]) -> tuple[float, float, tuple[int, ...]]:
        sub = C[np.ix_(idx, idx)]
        off = sub[~np.eye(k, dtype=bool)]
        return (float(off.max()), round(float(off.mean()), 12), idx)

    best = min(itertools.combinations(range(n_patterns), k), key=key)
    assert least_correlated(ps, k) == tuple(ps.names[i] for i in best)


def test_letter_draws_meet_the_rule_and_follow_the_seed() -> None:
    font = letters26()
    rule = DrawRule(size=16, min_distance=8)
    sets = draw_sets(font, "letters", 30, rule, seed=3)
    assert len(sets) == 30
    for ps in sets:
        assert ps.count == 16 and len(set(ps.names)) == 16
        assert list(ps.names) == sorted(ps.names)  # the font's order
        assert min_distance(ps.patterns) >= 8
        assert not {"O", "Q"} <= set(ps.names)  # the font's only pair closer than 8 pixels
    again = draw_sets(font, "letters", 30, rule, seed=3)
    assert [s.names for s in again] == [s.names for s in sets]
    other = draw_sets(font, "letters", 30, rule, seed=4)
    assert [s.names for s in other] != [s.names for s in sets]
    # uniform over the letters: each appears in about 16/26 of the sets that meet the rule
    many = draw_sets(font, "letters", 400, rule, seed=5)
    share = np.mean([["A" in s.names for s in many]])
    assert 0.52 < share < 0.72


def test_random_family_matches_the_font_density_and_the_rule() -> None:
    font = letters26()
    sets = draw_sets(font, "random", 40, DrawRule(size=16, min_distance=30), seed=1)
    assert all(ps.shape == (10, 10) and ps.count == 16 for ps in sets)
    assert all(min_distance(ps.patterns) >= 30 for ps in sets)
    pooled = np.mean([density(ps) for ps in sets])
    assert abs(pooled - density(font)) < 0.01  # 64 000 Bernoulli pixels: sd 0.002
    # independent pixels: nearly uncorrelated, unlike letters
    assert abs(np.mean([mean_correlation(ps) for ps in sets])) < 0.02
    assert mean_correlation(builtin_patterns()) > 0.2


def test_impossible_rules_are_one_line_errors() -> None:
    font = letters26()
    with pytest.raises(InputError, match="cannot be drawn from 26 patterns"):
        draw_sets(font, "letters", 2, DrawRule(size=27), seed=0)
    with pytest.raises(InputError, match=r"no subset meeting the rule") as info:
        draw_sets(font, "letters", 1, DrawRule(size=16, min_distance=60), seed=0)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="at least one set"):
        draw_sets(font, "letters", 0, DrawRule(), seed=0)
    with pytest.raises(InputError, match="cannot choose 30 of 26"):
        least_correlated(font, 30)


def test_summary_and_distances() -> None:
    s = summary([0.2, 0.4, 0.9])
    assert s["mean"] == pytest.approx(0.5)
    assert s["sd"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert (s["min"], s["max"]) == (0.2, 0.9)
    assert summary([0.3])["sd"] == 0.0
    P = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [-1.0, -1.0, -1.0, -1.0]])
    np.testing.assert_array_equal(distances(P), [[0, 2, 4], [2, 0, 2], [4, 2, 0]])
    assert min_distance(P) == 2


def test_set_files_round_trip() -> None:
    ps = draw_sets(letters26(), "letters", 1, DrawRule(), seed=0)[0]
    back = parse_text(to_text(ps), "set")
    assert back.names == ps.names and back.shape == ps.shape
    np.testing.assert_array_equal(back.patterns, ps.patterns)


def test_the_named_builtin_set_is_the_builtin_set() -> None:
    from hil.network.patterns import builtin_set, patterns_from_spec

    for ps in (builtin_set("letters16"), patterns_from_spec("builtin:letters16")):
        assert ps.names == BUILTIN_LETTERS
        np.testing.assert_array_equal(ps.patterns, builtin_patterns().patterns)
