"""Eq. 20 is gradient descent: the update equals -eta t_w dE/dW (finite differences)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hil.network.dynamics import RelaxConfig, relax_forward, relax_side
from hil.network.learning import RuleConfig, band_mask, presentation_update

TIGHT = RuleConfig(
    forward=RelaxConfig(dt=0.5, t_max=400.0, tol=1e-13),
    side=RelaxConfig(dt=0.5, t_max=400.0, tol=1e-13),
    symmetric=False,
)


def loss(W: np.ndarray, I: np.ndarray, T: np.ndarray) -> float:
    v = relax_forward(W, I, cfg=TIGHT.forward).state
    return float(0.5 * np.sum((T - v) ** 2))


def network(n: int, seed: int, symmetric: bool) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    W = rng.uniform(-0.3, 0.3, (n, n))
    if symmetric:
        W = np.triu(W) + np.triu(W, 1).T
    I = rng.uniform(-1.0, 1.0, (1, n))
    T = np.where(rng.random((1, n)) < 0.5, 1.0, -1.0)
    return W, I, T


@pytest.mark.parametrize(("n", "seed"), [(4, 0), (6, 1), (7, 2)])
def test_update_is_minus_gradient_on_non_symmetric_networks(n: int, seed: int) -> None:
    W, I, T = network(n, seed, symmetric=False)
    upd = presentation_update(W, I, T, TIGHT)
    assert upd.status == "ok" and upd.accepted
    h = 1e-6
    grad = np.zeros_like(W)
    for i in range(n):
        for j in range(n):
            E = np.zeros_like(W)
            E[i, j] = h
            grad[i, j] = (loss(W + E, I, T) - loss(W - E, I, T)) / (2 * h)
    step = TIGHT.eta * TIGHT.t_w
    np.testing.assert_allclose(upd.dW / step, -grad, atol=1e-7, rtol=1e-5)
    assert np.abs(grad).max() > 1e-3  # the check is not vacuous


def test_symmetrised_update_is_the_gradient_of_the_shared_weight() -> None:
    n = 5
    W, I, T = network(n, 3, symmetric=True)
    cfg = TIGHT.model_copy(update={"symmetric": True})
    upd = presentation_update(W, I, T, cfg)
    h = 1e-6
    step = cfg.eta * cfg.t_w
    for i, j in [(0, 1), (1, 3), (2, 4), (2, 2)]:
        E = np.zeros_like(W)
        E[i, j] = E[j, i] = h  # move the one shared parameter w_ij = w_ji
        g = (loss(W + E, I, T) - loss(W - E, I, T)) / (2 * h)
        weight = 1.0 if i == j else 0.5  # dE/ds = dE/dw_ij + dE/dw_ji = 2 sym(.)_ij
        assert upd.dW[i, j] / step == pytest.approx(-weight * g, rel=1e-5, abs=1e-8)
    np.testing.assert_allclose(upd.dW, upd.dW.T, atol=1e-15)


def test_batch_update_is_the_sum_of_single_updates() -> None:
    W, _, _ = network(6, 4, symmetric=True)
    rng = np.random.default_rng(8)
    I = rng.uniform(-1, 1, (3, 6))
    T = np.where(rng.random((3, 6)) < 0.5, 1.0, -1.0)
    cfg = RuleConfig()
    batch = presentation_update(W, I, T, cfg).dW
    single = sum(presentation_update(W, I[b], T[b], cfg).dW for b in range(3))
    np.testing.assert_allclose(batch, single, atol=1e-10)


def test_band_mask_and_masked_update() -> None:
    m = band_mask(5, 1)
    assert m.sum() == 5 + 2 * 4
    assert m[0, 1] and not m[0, 2] and m[4, 3]
    assert band_mask(5, None).all()
    W, I, T = network(5, 5, symmetric=True)
    upd = presentation_update(W, I, T, RuleConfig(band_radius=1))
    assert np.all(upd.dW[~m] == 0.0)
    assert np.abs(upd.dW[m]).max() > 0.0


def test_diverging_side_network_is_refused_or_clipped(caplog: pytest.LogCaptureFixture) -> None:
    # Unit 0 starts on the unstable fixed point v = 0 of -v + tanh(2 v), where g' = 1 and
    # its side unit grows like e^t; unit 1 settles at tanh(0.5), so y v^T is not zero.
    W = np.diag([2.0, 0.0])
    I, T = np.array([0.0, 0.5]), np.ones(2)
    refuse = RuleConfig(v0=0.0, y0=0.0)
    with caplog.at_level(logging.WARNING, logger="hil.network.learning"):
        upd = presentation_update(W, I, T, refuse)
    assert upd.status == "side_diverged"
    assert not upd.accepted and not upd.clipped
    assert np.all(upd.dW == 0.0)
    assert "side_diverged: refused" in caplog.text

    clip = refuse.model_copy(update={"on_bad_update": "clip", "clip_abs_dw": 0.02})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hil.network.learning"):
        upd = presentation_update(W, I, T, clip)
    assert upd.accepted and upd.clipped
    assert np.abs(upd.dW).max() == pytest.approx(0.02)
    assert "clipped" in caplog.text


def test_side_network_cut_off_before_it_settles_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A contracting side network given too short a span is still moving at t_max: not
    # diverged, but its state is no fixed point either.
    rng = np.random.default_rng(4)
    W = rng.uniform(-0.1, 0.1, (5, 5))
    I, T = rng.choice([-1.0, 1.0], 5), rng.choice([-1.0, 1.0], 5)
    short = RuleConfig(side=RelaxConfig(t_max=1.0))
    with caplog.at_level(logging.WARNING, logger="hil.network.learning"):
        upd = presentation_update(W, I, T, short)
    assert upd.status == "side_not_settled"
    assert not upd.accepted and np.all(upd.dW == 0.0)
    assert "side_not_settled: refused" in caplog.text
    assert presentation_update(W, I, T, RuleConfig()).status == "ok"


def test_unsettled_forward_network_is_refused_or_clipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An oscillating (non-symmetric) forward network never settles: its v(t_max) is no
    # fixed point, and the side network's answer is not a gradient.
    W = np.array([[1.5, 3.0], [-3.0, 1.5]])
    I, T = np.zeros(2), np.array([1.0, -1.0])
    base = RuleConfig(symmetric=False, forward=RelaxConfig(dt=0.1, t_max=50.0), side_settle_tol=1e3)
    with caplog.at_level(logging.WARNING, logger="hil.network.learning"):
        upd = presentation_update(W, I, T, base)
    assert upd.status == "forward_not_settled"
    assert not upd.accepted and np.all(upd.dW == 0.0)
    assert "forward_not_settled: refused" in caplog.text

    clip = base.model_copy(update={"on_bad_update": "clip", "clip_abs_dw": 1e-3})
    upd = presentation_update(W, I, T, clip)
    assert upd.accepted and upd.clipped
    assert np.abs(upd.dW).max() == pytest.approx(1e-3)


def test_slow_but_contracting_side_network_is_accepted() -> None:
    # A side network still moving slightly at t = 20 (residual above the relaxation
    # tolerance, below side_settle_tol) is a gradient and must not be refused.
    W = 0.6 * np.eye(4)
    I, T = np.full(4, 0.2), np.ones(4)
    cfg = RuleConfig(v0=0.0, y0=0.0)
    v = relax_forward(W, I, v0=0.0, cfg=cfg.forward).state
    side = relax_side(W, I, v, T, y0=0.0, cfg=cfg.side)
    assert cfg.side.tol < side.residual[0] < cfg.side_settle_tol
    upd = presentation_update(W, I, T, cfg)
    assert upd.status == "ok" and upd.accepted
    assert np.abs(upd.dW).max() > 0.0


def test_a_batch_loses_only_its_bad_samples(caplog: pytest.LogCaptureFixture) -> None:
    W = np.diag([2.0, 0.0])
    bad, good = np.array([0.0, 0.5]), np.array([0.3, 0.5])
    T = np.ones(2)
    cfg = RuleConfig(v0=0.0, y0=0.0)
    with caplog.at_level(logging.WARNING, logger="hil.network.learning"):
        both = presentation_update(W, np.vstack([bad, good]), np.vstack([T, T]), cfg)
    alone = presentation_update(W, good, T, cfg)
    assert alone.status == "ok"
    assert both.status == "side_diverged" and both.accepted and both.rejected == 1
    np.testing.assert_allclose(both.dW, alone.dW, atol=1e-15)
    assert "refused for 1 of 2 samples" in caplog.text
