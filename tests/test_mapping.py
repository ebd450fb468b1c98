"""Weights on differential pairs: layout, scale, the update split, stuck devices."""

from __future__ import annotations

import numpy as np
import pytest

from hil.insitu.mapping import (
    DifferentialMapping,
    StuckDetector,
    stuck_after_programming,
    stuck_report,
)

G_MIN, G_MAX = 1e-6, 11e-6


@pytest.mark.parametrize("layout", ["blocks", "interleaved"])
def test_targets_round_trip_through_the_physical_array(layout: str) -> None:
    m = DifferentialMapping.from_range(6, G_MIN, G_MAX, w_max=0.5, layout=layout)  # type: ignore[arg-type]
    assert m.shape == (6, 12)
    rng = np.random.default_rng(1)
    W = rng.uniform(-0.5, 0.5, (6, 6))
    G = m.targets(W)
    assert G.min() >= G_MIN and G.max() <= G_MAX
    np.testing.assert_allclose(m.weights(G), W, atol=1e-12)
    gp, gm = m.split(G)
    np.testing.assert_array_equal(m.join(gp, gm), G)
    # The scale uses one device's whole range for |W| = w_max.
    assert m.g_scale == pytest.approx((G_MAX - G_MIN) / 0.5)


def test_layout_puts_pairs_where_documented() -> None:
    blocks = DifferentialMapping.from_range(3, G_MIN, G_MAX, w_max=1.0)
    inter = DifferentialMapping.from_range(3, G_MIN, G_MAX, w_max=1.0, layout="interleaved")
    assert list(blocks.plus_cols) == [0, 1, 2] and list(blocks.minus_cols) == [3, 4, 5]
    assert list(inter.plus_cols) == [0, 2, 4] and list(inter.minus_cols) == [1, 3, 5]


def test_targets_refuse_a_weight_beyond_w_max() -> None:
    m = DifferentialMapping.from_range(2, G_MIN, G_MAX, w_max=0.5)
    with pytest.raises(ValueError, match=r"W\[1, 0\].*w_max"):
        m.targets(np.array([[0.0, 0.1], [0.7, 0.0]]))


def test_request_realises_dw_on_the_device_with_more_room() -> None:
    m = DifferentialMapping.from_range(2, G_MIN, G_MAX, w_max=1.0)
    g_plus = np.array([[9e-6, 2e-6], [5e-6, 5e-6]])
    g_minus = np.array([[3e-6, 3e-6], [10e-6, 1.5e-6]])
    G = m.join(g_plus, g_minus)
    dW = np.array([[0.05, 0.05], [-0.05, -0.05]])
    dG = m.request(dW, G)
    dp, dm = m.split(dG)
    # (0,0): G+ near the top, G- has 2 uS above G_min -> RESET G- (dW > 0 by lowering G-).
    assert dp[0, 0] == 0.0 and dm[0, 0] < 0
    # (0,1): G+ has 9 uS to the top -> SET G+.
    assert dp[0, 1] > 0 and dm[0, 1] == 0.0
    # (1,0): dW < 0; G+ has 4 uS to go down, G- 1 uS to go up -> RESET G+.
    assert dp[1, 0] < 0 and dm[1, 0] == 0.0
    # (1,1): G+ has 4 uS down, G- has 9.5 uS up -> SET G-.
    assert dp[1, 1] == 0.0 and dm[1, 1] > 0
    # Whatever the device, the weight change is exactly dW.
    np.testing.assert_allclose(m.weights(G + dG) - m.weights(G), dW, atol=1e-12)


def test_request_routes_around_stuck_devices_and_freezes_dead_pairs() -> None:
    m = DifferentialMapping.from_range(2, G_MIN, G_MAX, w_max=1.0)
    G = m.targets(np.zeros((2, 2)))
    stuck = np.zeros(m.shape, dtype=bool)
    stuck[0, m.plus_cols[0]] = True  # weight (0,0): G+ stuck
    stuck[1, m.plus_cols[1]] = True  # weight (1,1): both stuck
    stuck[1, m.minus_cols[1]] = True
    dW = np.full((2, 2), 0.02)
    dp, dm = m.split(m.request(dW, G, stuck))
    assert dp[0, 0] == 0.0 and dm[0, 0] < 0  # learns through G-
    assert dp[1, 1] == 0.0 and dm[1, 1] == 0.0  # frozen
    np.testing.assert_array_equal(m.pair_mask(stuck), [[True, False], [False, True]])
    report = stuck_report(m, stuck, G)
    assert report["stuck_devices"] == 3
    assert report["frozen_weights"] == 1 and report["one_sided_weights"] == 1
    roles = sorted(d["role"] for d in report["devices"])  # type: ignore[attr-defined]
    assert roles == ["G+", "G+", "G-"]


def test_stuck_detector_needs_repeated_evidence_and_tells_stuck_from_saturated() -> None:
    det = StuckDetector((1, 3), G_MIN, G_MAX, min_expected=0.05, ratio=0.1, strikes=2)
    # Device 0 moves as asked; device 1 sits at G_min and never moves (stuck at G_min);
    # device 2 is mid-range and will not go up (saturated at its own upper bound).
    g = np.array([[5e-6, G_MIN, 8e-6]])
    det.observe(g)
    step = np.array([[1e-6, 1e-6, 1e-6]])  # the model expects every device to move 1 uS up
    history = []
    for _ in range(2):
        det.add_expected(g, g + step)
        g = g + np.array([[1e-6, 0.0, 0.0]])
        newly = det.observe(g)
        history.append(det.stuck.copy())
    assert not history[0].any()  # one strike is not enough
    assert det.stuck.tolist() == [[False, True, False]]
    assert newly.tolist() == [[False, True, False]]
    # The saturated device still moves down, so it is never called stuck; a device that
    # refuses both directions is.
    for _ in range(2):
        det.add_expected(g, g + np.array([[0.0, 0.0, -1e-6]]))
        g = g + np.array([[0.0, 0.0, -1e-6]])
        det.observe(g)
    assert not det.stuck[0, 2]
    both = StuckDetector((1, 1), G_MIN, G_MAX, strikes=1)
    g1 = np.array([[6e-6]])
    both.observe(g1)
    for d in (1e-6, -1e-6):
        both.add_expected(g1, g1 + d)
        both.observe(g1)
    assert both.stuck.all()
    # A device with no expected movement (nothing asked, or at its bound) is never judged.
    quiet = StuckDetector((1, 1), G_MIN, G_MAX)
    for _ in range(5):
        quiet.observe(np.array([[G_MAX]]))
    assert not quiet.stuck.any()
    restored = StuckDetector((1, 3), G_MIN, G_MAX, strikes=2)
    restored.load(det.state())
    assert restored.stuck.tolist() == det.stuck.tolist()
    np.testing.assert_array_equal(restored.count_up, det.count_up)


def test_stuck_after_programming_flags_devices_that_never_moved() -> None:
    start = np.array([1e-6, 1e-6, 5e-6])
    end = np.array([1e-6, 6e-6, 5e-6])
    target = np.array([6e-6, 6e-6, 5.05e-6])
    flags = stuck_after_programming(start, end, target, G_MIN, G_MAX, tol=0.02)
    assert flags.tolist() == [True, False, False]


def test_bad_mapping_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="g_min < g_max"):
        DifferentialMapping(2, 5e-6, 1e-6, 1.0)
    with pytest.raises(ValueError, match="w_max"):
        DifferentialMapping.from_range(2, G_MIN, G_MAX, w_max=0.0)
    with pytest.raises(ValueError, match="shape"):
        DifferentialMapping.from_range(2, G_MIN, G_MAX, w_max=1.0).weights(np.zeros((2, 2)))
