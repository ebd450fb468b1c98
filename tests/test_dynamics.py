"""The batched fixed-step solver against solve_ivp, and its settle/diverge diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from hil.network.dynamics import (
    RelaxConfig,
    relax_forward,
    relax_forward_stacked,
    relax_side,
    relax_side_stacked,
    solve_side,
)
from hil.network.reference import reference_forward, reference_side


def sym_network(n: int, scale: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = rng.uniform(-scale, scale, (n, n))
    return np.triu(A) + np.triu(A, 1).T


@pytest.mark.parametrize(("n", "scale", "seed"), [(6, 0.4, 0), (12, 0.25, 1), (20, 0.15, 2)])
def test_forward_and_side_match_solve_ivp(n: int, scale: float, seed: int) -> None:
    W = sym_network(n, scale, seed)
    rng = np.random.default_rng(seed + 100)
    I = np.where(rng.random((4, n)) < 0.5, 1.0, -1.0)
    T = np.where(rng.random((4, n)) < 0.5, 1.0, -1.0)
    fwd = relax_forward(W, I, cfg=RelaxConfig(dt=0.5, t_max=50.0, tol=1e-9))
    assert fwd.converged.all()
    np.testing.assert_allclose(fwd.state, reference_forward(W, I, t_max=50.0), atol=1e-4)
    side = relax_side(W, I, fwd.state, T, cfg=RelaxConfig(dt=0.5, t_max=20.0, tol=1e-9))
    ref = reference_side(W, I, fwd.state, T, t_max=20.0)
    np.testing.assert_allclose(side.state, ref, atol=1e-4)


def test_fixed_point_iteration_reaches_the_same_fixed_point() -> None:
    W = sym_network(10, 0.2, 4)
    I = np.random.default_rng(5).uniform(-1, 1, (3, 10))
    a = relax_forward(W, I, cfg=RelaxConfig(dt=1.0, t_max=200.0, tol=1e-11)).state
    b = reference_forward(W, I, t_max=200.0)
    np.testing.assert_allclose(a, b, atol=1e-8)


def test_batch_rows_are_independent() -> None:
    W = sym_network(8, 0.3, 6)
    I = np.random.default_rng(7).uniform(-1, 1, (5, 8))
    cfg = RelaxConfig(tol=1e-10, t_max=80.0)
    batch = relax_forward(W, I, cfg=cfg).state
    single = np.vstack([relax_forward(W, row, cfg=cfg).state for row in I])
    np.testing.assert_allclose(batch, single, atol=1e-12)


def test_unsettled_forward_network_is_reported() -> None:
    # -v + tanh(W v) with W having eigenvalues 1.5 +- 3i: the origin is an unstable focus
    # and the bounded state circles a limit cycle forever.
    W = np.array([[1.5, 3.0], [-3.0, 1.5]])
    res = relax_forward(W, np.zeros((1, 2)), cfg=RelaxConfig(dt=0.1, t_max=50.0))
    assert not res.converged[0]
    assert not res.diverged[0]
    assert res.residual[0] > 0.1


def test_diverging_side_network_is_reported() -> None:
    # v = 0 is an unstable fixed point of dv/dt = -v + tanh(2 v); there g' = 1 and the side
    # network dy/dt = y + J grows like e^t.
    W = 2.0 * np.eye(3)
    fwd = relax_forward(W, np.zeros(3), v0=0.0)
    assert fwd.converged.all()
    side = relax_side(W, np.zeros(3), fwd.state, np.ones(3), y0=0.0)
    assert side.diverged.all()
    assert not side.converged.any()


def test_shape_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="input has 3 units, the network has 2"):
        relax_forward(np.eye(2), np.zeros(3))


def test_slowly_growing_side_network_is_told_apart_from_a_slowly_settling_one() -> None:
    # With v_inf = 0 and I = 0 the side network is dy/dt = (a - 1) y + T: it grows like
    # e^{0.1 t} for a = 1.1 (still far below the divergence bound at t = 20) and decays
    # like e^{-0.1 t} for a = 0.9 (not yet settled at t = 20).
    n = 3
    zeros, targets = np.zeros(n), np.ones(n)
    grow = relax_side(1.1 * np.eye(n), zeros, zeros, targets, cfg=RelaxConfig(t_max=20.0))
    settle = relax_side(0.9 * np.eye(n), zeros, zeros, targets, cfg=RelaxConfig(t_max=20.0))
    assert not grow.diverged.any() and not grow.converged.any()
    assert grow.growing.all()
    assert not settle.converged.any() and not settle.growing.any()


def test_stacked_networks_follow_their_own_trajectories() -> None:
    # Three networks with rows that settle at different times, one row that never settles
    # (the limit cycle above) and one side row that diverges: each network's rows must end
    # exactly where relaxing that network alone ends, with the same flags.
    rng = np.random.default_rng(11)
    Ws = np.stack([sym_network(2, s, i) for i, s in enumerate((0.3, 0.8, 1.2))])
    Ws[2] = [[1.5, 3.0], [-3.0, 1.5]]
    I = rng.uniform(-1, 1, (3, 4, 2))
    T = np.where(rng.random((3, 4, 2)) < 0.5, 1.0, -1.0)
    cfg = RelaxConfig(dt=0.1, t_max=30.0, tol=1e-8)
    fwd = relax_forward_stacked(Ws, I, cfg=cfg)
    side = relax_side_stacked(Ws, I, fwd.state, T, cfg=cfg)
    assert not fwd.converged[2].any() and fwd.converged[0].all()  # the test has teeth
    for s in range(3):
        one = relax_forward(Ws[s], I[s], cfg=cfg)
        np.testing.assert_allclose(fwd.state[s], one.state, rtol=0, atol=1e-14)
        np.testing.assert_array_equal(fwd.converged[s], one.converged)
        np.testing.assert_array_equal(fwd.growing[s], one.growing)
        np.testing.assert_allclose(fwd.residual[s], one.residual, rtol=1e-9)
        side_one = relax_side(Ws[s], I[s], one.state, T[s], cfg=cfg)
        np.testing.assert_allclose(side.state[s], side_one.state, rtol=0, atol=1e-13)
        np.testing.assert_array_equal(side.converged[s], side_one.converged)
        np.testing.assert_array_equal(side.diverged[s], side_one.diverged)


@pytest.mark.parametrize(("n", "scale", "seed"), [(6, 0.4, 0), (12, 0.25, 1)])
def test_exact_side_solve_is_the_side_networks_limit(n: int, scale: float, seed: int) -> None:
    W = sym_network(n, scale, seed)
    W[0, 1] += 0.2  # non-symmetric: the solve must use W^T as eq. 19 does
    rng = np.random.default_rng(seed + 7)
    I = rng.uniform(-1, 1, (3, n))
    T = np.where(rng.random((3, n)) < 0.5, 1.0, -1.0)
    v = relax_forward(W, I, cfg=RelaxConfig(dt=0.5, t_max=200.0, tol=1e-12)).state
    y = solve_side(W, I, v, T)
    long = reference_side(W, I, v, T, t_max=400.0, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(y, long, atol=1e-8)
    # the stacked form gives the same answer network by network
    ys = solve_side(np.stack([W, W]), np.stack([I, I]), np.stack([v, v]), np.stack([T, T]))
    np.testing.assert_allclose(ys[1], y, atol=1e-13)


def test_exact_side_solve_reaches_what_twenty_time_units_do_not() -> None:
    # dy/dt = (a - 1) y + g'(0) T with a = 0.95: it settles like e^{-0.05 t}, so y(20) is
    # still 37 % short of y_inf = T / 0.05; the solve gives y_inf itself.
    n = 3
    zeros, T = np.zeros((1, n)), np.ones((1, n))
    W = 0.95 * np.eye(n)
    y20 = relax_side(W, zeros, zeros, T, y0=0.0).state
    y = solve_side(W, zeros, zeros, T)
    np.testing.assert_allclose(y, 20.0, rtol=1e-12)
    assert np.all(y20 < 0.7 * y)
