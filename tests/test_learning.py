"""Eq. 20 is gradient descent: the update equals -eta t_w dE/dW (finite differences)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from pydantic import ValidationError

from hil.network.dynamics import RelaxConfig, relax_forward, relax_side
from hil.network.learning import RuleConfig, band_mask, presentation_update, stacked_update

TIGHT = RuleConfig(
    forward=RelaxConfig(dt=0.5, t_max=400.0, tol=1e-13),
    side=RelaxConfig(dt=0.5, t_max=400.0, tol=1e-13),
    symmetric=False,
    update_guard="none",  # the pure gradient, whatever its size
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


def test_diverging_side_network_is_refused_or_clipped() -> None:
    # Unit 0 starts on the unstable fixed point v = 0 of -v + tanh(2 v), where g' = 1 and
    # its side unit grows like e^t; unit 1 settles at tanh(0.5), so y v^T is not zero.
    W = np.diag([2.0, 0.0])
    I, T = np.array([0.0, 0.5]), np.ones(2)
    refuse = RuleConfig(v0=0.0, y0=0.0, update_guard="settle")
    upd = presentation_update(W, I, T, refuse)
    assert upd.status == "side_diverged"
    assert not upd.accepted and not upd.clipped
    assert np.all(upd.dW == 0.0)
    assert upd.counts["side_diverged"] == 1 and upd.counts["ok"] == 0

    clip = refuse.model_copy(update={"on_bad_update": "clip", "clip_abs_dw": 0.02})
    upd = presentation_update(W, I, T, clip)
    assert upd.accepted and upd.clipped
    assert np.abs(upd.dW).max() == pytest.approx(0.02)
    # no magnitude treatment accepts a diverging side network
    for guard in ("filter", "clip", "none"):
        upd = presentation_update(W, I, T, refuse.model_copy(update={"update_guard": guard}))
        assert upd.status == "side_diverged" and not upd.accepted


def test_side_network_cut_off_before_it_settles_is_refused() -> None:
    # A contracting side network given too short a span is still moving at t_max: not
    # diverged, but its state is no fixed point either.
    rng = np.random.default_rng(4)
    W = rng.uniform(-0.1, 0.1, (5, 5))
    I, T = rng.choice([-1.0, 1.0], 5), rng.choice([-1.0, 1.0], 5)
    short = RuleConfig(side=RelaxConfig(t_max=1.0), update_guard="settle")
    upd = presentation_update(W, I, T, short)
    assert upd.status == "side_not_settled"
    assert not upd.accepted and np.all(upd.dW == 0.0)
    assert upd.counts["side_not_settled"] == 1
    # without the settle guard the cut-off y(1) is taken as it is
    upd = presentation_update(W, I, T, short.model_copy(update={"update_guard": "none"}))
    assert upd.status == "ok" and upd.accepted and upd.counts["ok"] == 1
    assert (
        presentation_update(W, I, T, short.model_copy(update={"side": RelaxConfig()})).status
        == "ok"
    )


def test_unsettled_forward_network_is_refused_or_clipped() -> None:
    # An oscillating (non-symmetric) forward network never settles: its v(t_max) is no
    # fixed point, and the side network's answer is not a gradient.
    W = np.array([[1.5, 3.0], [-3.0, 1.5]])
    I, T = np.zeros(2), np.array([1.0, -1.0])
    base = RuleConfig(symmetric=False, forward=RelaxConfig(dt=0.1, t_max=50.0), side_settle_tol=1e3)
    upd = presentation_update(W, I, T, base)
    assert upd.status == "forward_not_settled"
    assert not upd.accepted and np.all(upd.dW == 0.0)
    assert upd.counts["forward_not_settled"] == 1

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
    assert both.counts["side_diverged"] == 1 and both.counts["ok"] == 1
    assert caplog.text == ""  # counted, not logged: a denoising run meets thousands


def test_exact_side_solve_gives_the_gradient() -> None:
    W, I, T = network(6, 1, symmetric=False)
    exact = TIGHT.model_copy(update={"side_solver": "exact", "update_guard": "none"})
    upd = presentation_update(W, I, T, exact)
    assert upd.status == "ok"
    h = 1e-6
    step = exact.eta * exact.t_w
    for i, j in [(0, 1), (2, 5), (4, 4)]:
        E = np.zeros_like(W)
        E[i, j] = h
        g = (loss(W + E, I, T) - loss(W - E, I, T)) / (2 * h)
        assert upd.dW[i, j] / step == pytest.approx(-g, rel=1e-5, abs=1e-8)
    np.testing.assert_allclose(upd.dW, presentation_update(W, I, T, TIGHT).dW, atol=1e-10)


def test_settle_guard_needs_the_relaxation() -> None:
    with pytest.raises(ValidationError, match="settle"):
        RuleConfig(side_solver="exact", update_guard="settle")
    default = RuleConfig()
    assert (default.side_solver, default.update_guard, default.max_grad) == ("relax", "clip", 1.0)
    assert RuleConfig(side_solver="exact").update_guard == "clip"


def two_samples() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small update and a large one: unit 0 sits at a = 0.95, so its y_inf is ~20x J."""
    W = np.diag([0.95, 0.0])
    I = np.array([[0.0, 0.5], [0.0, 0.5]])
    T = np.array([[0.0, 1.0], [1.0, 1.0]])  # sample 1 asks unit 0 to move: large y
    return W, I, T


def test_magnitude_filter_leaves_out_only_the_large_sample() -> None:
    W, I, T = two_samples()
    base = RuleConfig(v0=0.0, side_solver="exact", update_guard="none", symmetric=False)
    small = presentation_update(W, I[:1], T[:1], base)
    large = presentation_update(W, I[1:], T[1:], base)
    size_small = np.abs(small.y_inf).max() * np.abs(small.v_inf).max()
    size_large = np.abs(large.y_inf).max() * np.abs(large.v_inf).max()
    assert size_small < 1.0 < 5.0 < size_large  # the threshold 5 separates them

    filt = base.model_copy(update={"update_guard": "filter", "max_grad": 5.0})
    both = presentation_update(W, I, T, filt)
    assert both.status == "large_update" and both.accepted and both.rejected == 1
    assert both.counts["large_update"] == 1 and both.counts["ok"] == 1
    np.testing.assert_allclose(both.dW, small.dW, atol=1e-15)
    none = presentation_update(W, I, T, base)
    np.testing.assert_allclose(none.dW, small.dW + large.dW, atol=1e-12)


def test_max_norm_clip_scales_the_large_sample_to_the_threshold() -> None:
    W, I, T = two_samples()
    base = RuleConfig(v0=0.0, side_solver="exact", update_guard="none", symmetric=False)
    clip = base.model_copy(update={"update_guard": "clip", "max_grad": 5.0})
    small = presentation_update(W, I[:1], T[:1], base)
    large = presentation_update(W, I[1:], T[1:], base)
    both = presentation_update(W, I, T, clip)
    assert both.status == "ok" and both.accepted and both.clipped
    assert both.counts["clipped"] == 1 and both.counts["ok"] == 2
    step = clip.eta * clip.t_w
    scaled = large.dW * (5.0 / (np.abs(large.dW).max() / step))
    assert np.abs(scaled).max() / step == pytest.approx(5.0)  # max-norm of y v^T is 5
    np.testing.assert_allclose(both.dW, small.dW + scaled, atol=1e-12)
    # the small sample alone is untouched
    alone = presentation_update(W, I[:1], T[:1], clip)
    assert not alone.clipped and np.array_equal(alone.dW, small.dW)


@pytest.mark.parametrize(
    "rule",
    [
        RuleConfig(),
        RuleConfig(side=RelaxConfig(t_max=2.0)),  # many side_not_settled
        RuleConfig(side=RelaxConfig(t_max=2.0), update_guard="clip", max_grad=0.3),
        RuleConfig(side_solver="exact", update_guard="filter", max_grad=0.3),
        RuleConfig(on_bad_update="clip", side=RelaxConfig(t_max=2.0), band_radius=2),
    ],
)
def test_stacked_update_is_presentation_update_per_network(rule: RuleConfig) -> None:
    rng = np.random.default_rng(3)
    S, B, n = 3, 4, 6
    Ws = np.stack([network(n, s, symmetric=True)[0] * 3 for s in range(S)])
    I = rng.uniform(-1, 1, (S, B, n))
    T = np.where(rng.random((S, B, n)) < 0.5, 1.0, -1.0)
    stacked = stacked_update(Ws, I, T, rule)
    acted = stacked.counts[:, 0].sum() < S * B or stacked.counts[:, -1].sum() > 0
    assert acted or rule == RuleConfig()  # the guards did act where the case is built for it
    for s in range(S):
        one = presentation_update(Ws[s], I[s], T[s], rule)
        got = stacked.result(s)
        np.testing.assert_allclose(got.dW, one.dW, rtol=0, atol=1e-14)
        assert (got.status, got.accepted, got.clipped, got.rejected) == (
            one.status,
            one.accepted,
            one.clipped,
            one.rejected,
        )
        assert got.counts == one.counts
        assert got.loss == pytest.approx(one.loss, rel=1e-14)
