"""Scoring rules, the nearest-pattern ceiling, and the recall fallback."""

from __future__ import annotations

import numpy as np
import pytest

from hil.network.dynamics import RelaxConfig, relax_forward
from hil.network.evaluation import Scores, nearest_pattern, pineda_recall, score


def test_two_wrong_signs_pass_three_fail() -> None:
    clean = np.ones((4, 100))
    out = clean.copy()
    out[1, :2] = -1.0  # MSE 0.08
    out[2, :3] = -1.0  # MSE 0.12
    out[3] = 0.9  # analog output, every sign right: MSE 0.01
    ok, exact = score(out, clean)
    np.testing.assert_array_equal(ok, [True, True, False, True])
    np.testing.assert_array_equal(exact, [True, False, False, True])


def test_analog_output_near_zero_costs_about_one_per_pixel() -> None:
    clean = np.ones((1, 100))
    out = np.ones((1, 100))
    out[0, :11] = 0.0  # 11 undecided pixels: MSE 0.11
    ok, exact = score(out, clean)
    assert not ok[0] and exact[0]  # sign(0) counts as +1 here, but the MSE is too large


def test_scores_per_class() -> None:
    clean = np.array([[1.0, 1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]])
    out = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]])
    s = Scores.of(out, clean, np.array([0, 0, 1, 1]), 3)
    assert s.accuracy == 0.75 and s.exact == 0.75
    np.testing.assert_array_equal(s.per_class, [0.5, 1.0, 0.0])


def test_the_lenient_score_allows_nine_wrong_pixels_of_a_hundred() -> None:
    clean = np.ones((3, 100))
    out = clean.copy()
    out[0, :9] = -1.0  # nine wrong signs: MSE 0.36 < 0.4
    out[1, :10] = -1.0  # ten: MSE 0.40, not below 0.4
    out[2, :2] = -1.0  # two: passes the main score too
    s = Scores.of(out, clean, np.array([0, 1, 2]), 3)
    assert s.accuracy_01 == pytest.approx(2 / 3) and s.accuracy == pytest.approx(1 / 3)
    assert s.per_class_01 is not None
    np.testing.assert_array_equal(s.per_class_01, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(s.per_class, [0.0, 0.0, 1.0])


def test_nearest_pattern_decodes_and_breaks_ties_at_random() -> None:
    P = np.array([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, 1.0]])
    X = np.array([[1.0, 1.0, 1.0, -1.0], [-1.0, -1.0, -1.0, 1.0]])
    np.testing.assert_array_equal(nearest_pattern(P, X, np.random.default_rng(0)), P)
    tie = np.tile([1.0, -1.0, 1.0, 1.0], (400, 1))  # distance 1 to both patterns
    out = nearest_pattern(P, tie, np.random.default_rng(1))
    first = float((out == P[0]).all(axis=1).mean())
    assert 0.4 < first < 0.6


def test_recall_redoes_unsettled_fixed_point_iterations_at_half_step() -> None:
    # v <- tanh(-1.5 v) swings with period 2, the ODE dv/dt = -v + tanh(-1.5 v) settles at 0.
    W = -1.5 * np.eye(2)
    X = np.zeros((3, 2))
    plain = relax_forward(W, X, cfg=RelaxConfig(dt=1.0, t_max=50.0, tol=1e-4))
    assert not plain.converged.any()
    res = pineda_recall(W, X)
    assert res.converged.all()
    np.testing.assert_allclose(res.state, 0.0, atol=1e-4)
