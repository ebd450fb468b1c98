"""The NeuroSim response model: NL labels, the n-pulse update and its inverse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from property_support import Reach, examples

from protocols.response import NeuroSimResponse, a_to_nl, curve, curve_inverse, nl_to_a

# Entries of NeuroSim's NL -> A/P_max table: `getParamA` in formula.cpp of MLP_NeuroSim_V3.0
# (neurosim/MLP_NeuroSim_V3.0 on GitHub), index = NL * 100 - 1, printed to six decimals.
# Chosen to span the table and to include every label a preset uses.
NEUROSIM_TABLE = [
    (0.01, 126.268958),
    (0.04, 31.566827),  # taox_hfox LTP
    (0.50, 2.519877),  # epiram
    (0.61, 2.063266),  # alox_hfo2 LTD
    (0.63, 1.997332),  # taox_hfox LTD
    (1.00, 1.251653),
    (1.21, 1.030168),
    (1.94, 0.629249),  # alox_hfo2 LTP
    (2.00, 0.609035),
    (2.40, 0.499181),  # ag_asi LTP
    (3.68, 0.300644),  # pcmo LTP
    (4.88, 0.200303),  # ag_asi LTD
    (6.01, 0.135117),
    (6.76, 0.100251),  # pcmo LTD
    (8.95, 0.024129),
    (9.00, 0.022810),
]


@pytest.mark.parametrize(("nl", "a_ref"), NEUROSIM_TABLE)
def test_nl_to_a_reproduces_neurosim_table_to_its_printed_digits(nl: float, a_ref: float) -> None:
    assert abs(float(nl_to_a(nl)) - a_ref) <= 6e-7  # half a unit of the sixth decimal
    assert float(nl_to_a(-nl)) == -float(nl_to_a(nl))


def test_nl_definition_is_scaled_max_deviation_from_linear() -> None:
    p = np.linspace(0, 1, 200_001)
    for nl in (0.3, 1.7, 4.0, 8.2):
        deviation = 10 / np.sqrt(0.98) * (curve(p, nl_to_a(nl)) - p).max()
        assert deviation == pytest.approx(nl, rel=1e-6)
        assert float(a_to_nl(nl_to_a(nl))) == pytest.approx(nl, rel=1e-6)
    # The plain 10 x max-deviation reading is 1 % off NeuroSim's labels.
    plain = 10 * (curve(p, nl_to_a(2.0)) - p).max()
    assert plain == pytest.approx(2.0 * np.sqrt(0.98), rel=1e-5)
    assert float(nl_to_a(0.0)) == pytest.approx(1e6)  # NL 0: the (numerically) linear curve


def test_nl_out_of_range_or_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        nl_to_a(float("nan"))
    with pytest.raises(ValueError, match="NL"):
        nl_to_a(50.0)


def test_curve_inverse_round_trips() -> None:
    reach = Reach("test_curve_inverse_round_trips")

    @settings(max_examples=examples(60))
    @given(st.floats(0.0, 1.0), st.floats(-8.0, 8.0))
    def check(g: float, nl: float) -> None:
        reach.example()
        a = nl_to_a(nl)
        if 0.0 < g < 1.0 and abs(nl) > 0.01:
            reach.hit("a curved inside point")  # not a bound, not the straight line
        assert float(curve(curve_inverse(g, a), a)) == pytest.approx(g, abs=1e-9)

    check()
    reach.require("a curved inside point", 0.25)


def make(nl_ltp: float = 2.4, nl_ltd: float = -4.88) -> NeuroSimResponse:
    return NeuroSimResponse(
        g_min_s=3.08e-9,
        g_max_s=38.5e-9,
        states_ltp=97,
        states_ltd=100,
        nl_ltp=nl_ltp,
        nl_ltd=nl_ltd,
    )


def test_full_sweeps_reach_the_bounds_and_stay_inside() -> None:
    r = make()
    g = np.array([r.g_min_s, r.g_max_s])
    assert r.after_pulses(g[:1], 97)[0] == pytest.approx(r.g_max_s)
    assert r.after_pulses(g[1:], -100)[0] == pytest.approx(r.g_min_s)
    many = r.after_pulses(np.linspace(r.g_min_s, r.g_max_s, 11), 10_000)
    assert np.all(many <= r.g_max_s) and np.all(many >= r.g_min_s)


def test_saturating_steps_shrink_toward_the_bound() -> None:
    r = make()
    g = np.linspace(r.g_min_s, r.g_max_s, 20)[:-1]
    up = r.step(g, +1)
    assert np.all(np.diff(up) < 0), "LTP steps must shrink as G approaches G_max"
    down = r.step(g[1:], -1)
    assert np.all(np.diff(down) > 0), "LTD steps must shrink as G approaches G_min"


def test_pulses_between_inverts_after_pulses() -> None:
    r = make(1.0, -1.0)
    rng = np.random.default_rng(1)
    g = rng.uniform(r.g_min_s, r.g_max_s, 50)
    n = rng.integers(-30, 31, 50)
    g_after = r.after_pulses(g, n)
    inside = (g_after > r.g_min_s) & (g_after < r.g_max_s)
    np.testing.assert_allclose(r.pulses_between(g, g_after)[inside], n[inside], atol=1e-6)


def test_response_model_rejects_inverted_range() -> None:
    with pytest.raises(ValueError, match="must exceed g_min_s"):
        NeuroSimResponse(
            g_min_s=2e-6, g_max_s=1e-6, states_ltp=10, states_ltd=10, nl_ltp=0, nl_ltd=0
        )
