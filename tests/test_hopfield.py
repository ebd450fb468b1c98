"""Hopfield baselines against hand-computed small cases, and asynchronous recall."""

from __future__ import annotations

import numpy as np
import pytest

from hil.network.hopfield import hebbian, recall, storkey

XI = np.array([[1.0, 1.0, -1.0], [1.0, -1.0, 1.0]])


def test_hebbian_hand_computed() -> None:
    # (xi1 xi1^T + xi2 xi2^T) / 3 = [[2,0,0],[0,2,-2],[0,-2,2]] / 3, diagonal zeroed
    expected = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -2.0], [0.0, -2.0, 0.0]]) / 3.0
    np.testing.assert_allclose(hebbian(XI), expected, atol=1e-15)


def test_storkey_hand_computed() -> None:
    # After xi1: W = xi1 xi1^T / 3 (zero diagonal) = [[0,1,-1],[1,0,-1],[-1,-1,0]] / 3.
    np.testing.assert_allclose(
        storkey(XI[:1]), np.array([[0, 1, -1], [1, 0, -1], [-1, -1, 0]]) / 3.0, atol=1e-15
    )
    # Then xi2 with h_ij = sum_{k != i,j} w_ik xi_k (worked by hand, N = 3):
    # h01 = -1/3, h10 = -1/3, h02 = -1/3, h20 = 1/3, h12 = 1/3, h21 = -1/3, so
    # dw01 = (-1 + 1/3 - 1/3)/3 = -1/3, dw02 = (1 - 1/3 + 1/3)/3 = 1/3,
    # dw12 = (-1 - 1/3 - 1/3)/3 = -5/9, giving w01 = 0, w02 = 0, w12 = -1/3 - 5/9 = -8/9.
    expected = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -8.0], [0.0, -8.0, 0.0]]) / 9.0
    np.testing.assert_allclose(storkey(XI), expected, atol=1e-15)


def test_storkey_differs_from_hebbian_on_correlated_patterns() -> None:
    rng = np.random.default_rng(3)
    base = np.where(rng.random(40) < 0.5, 1.0, -1.0)
    P = np.array([np.where(rng.random(40) < 0.15, -base, base) for _ in range(6)])
    Ws = storkey(P)
    np.testing.assert_allclose(Ws, Ws.T, atol=1e-12)
    assert np.all(np.diag(Ws) == 0.0)
    assert np.abs(Ws - hebbian(P)).max() > 0.01


def test_rules_refuse_non_bipolar_patterns() -> None:
    with pytest.raises(ValueError, match="±1"):
        hebbian(np.array([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="±1"):
        storkey(np.array([[1.0, 0.5]]))


def test_recall_corrects_one_flip_and_stops_after_a_quiet_sweep() -> None:
    xi = np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    W = hebbian(xi[None, :])
    start = np.tile(xi, (5, 1))
    for s in range(5):
        start[s, s] = -start[s, s]
    out = recall(W, start, np.random.default_rng(0))
    np.testing.assert_array_equal(out.state, np.tile(xi, (5, 1)))
    np.testing.assert_array_equal(out.sweeps, 2)  # one sweep that fixes, one that changes nothing
    assert out.converged.all()


def test_recall_is_asynchronous_in_random_order() -> None:
    # Two mutually inhibiting units from (+1, +1): a synchronous update would oscillate
    # between (+1, +1) and (-1, -1); an asynchronous one ends in (+1, -1) or (-1, +1)
    # depending on which unit goes first, and each sample draws its own order.
    W = np.array([[0.0, -1.0], [-1.0, 0.0]])
    out = recall(W, np.ones((400, 2)), np.random.default_rng(1))
    assert out.converged.all()
    assert np.all(out.state.sum(axis=1) == 0.0)
    first_flipped = float((out.state[:, 0] == -1.0).mean())
    assert 0.4 < first_flipped < 0.6


def test_zero_field_keeps_the_state() -> None:
    start = np.array([[1.0, -1.0, 1.0]])
    out = recall(np.zeros((3, 3)), start, np.random.default_rng(0))
    np.testing.assert_array_equal(out.state, start)
    assert out.sweeps[0] == 1


def test_recall_same_seed_same_result() -> None:
    rng = np.random.default_rng(5)
    P = np.where(rng.random((5, 30)) < 0.5, 1.0, -1.0)
    X = np.where(rng.random((50, 30)) < 0.2, -P[np.arange(50) % 5], P[np.arange(50) % 5])
    a = recall(storkey(P), X, np.random.default_rng(9))
    b = recall(storkey(P), X, np.random.default_rng(9))
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.sweeps, b.sweeps)


def test_a_field_that_is_zero_up_to_rounding_is_a_tie() -> None:
    # Unit 0's field is 0.1 + 0.2 - 0.3, which is 5.6e-17 in floating point: a tie, so
    # unit 0 keeps its -1. Units 1-3 hold their states through self-excitation.
    W = np.array(
        [
            [0.0, 0.1, 0.2, -0.3],
            [0.1, 1.0, 0.0, 0.0],
            [0.2, 0.0, 1.0, 0.0],
            [-0.3, 0.0, 0.0, 1.0],
        ]
    )
    assert W[0] @ np.array([-1.0, 1.0, 1.0, 1.0]) != 0.0
    out = recall(W, np.array([[-1.0, 1.0, 1.0, 1.0]]), np.random.default_rng(0))
    np.testing.assert_array_equal(out.state, [[-1.0, 1.0, 1.0, 1.0]])
    assert out.sweeps[0] == 1
