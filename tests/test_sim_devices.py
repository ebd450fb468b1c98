"""Device models of the simulator: bounds, curve shapes, NL, amplitude and width dependence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from property_support import Reach, examples

from protocols.errors import InputError
from protocols.plan import PulseGroup, PulsePlan, PulseShape
from protocols.response import NeuroSimResponse, curve, nl_to_a
from sim_backend import PRESETS, SimulatedCrossbar, get_preset, mean_response
from sim_backend.config import DeviceToDevice, NeuroSimModel

QUIET: dict[str, Any] = {"d2d": DeviceToDevice(), "c2c": {"sigma": 0.0}}


def plan(
    shape: tuple[int, int], pulse: PulseShape, counts: object, bias: str = "none"
) -> PulsePlan:
    c = np.broadcast_to(np.asarray(counts, dtype=np.int64), shape).copy()
    return PulsePlan.from_groups(shape, [PulseGroup(pulse, c)], bias=bias)  # type: ignore[arg-type]


def trace(xbar: SimulatedCrossbar, pulse: PulseShape, steps: int) -> np.ndarray:
    """Conductance of every device after 0..steps single pulses, shape (steps + 1, n)."""
    out = [xbar.conductances().ravel()]
    one = plan(xbar.shape, pulse, 1)
    for _ in range(steps):
        xbar.apply(one)
        out.append(xbar.conductances().ravel())
    return np.array(out)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_conductance_never_leaves_the_device_window(name: str) -> None:
    rng = np.random.default_rng(11)
    preset = get_preset(name)
    xbar = SimulatedCrossbar(12, 10, preset=name, seed=4, c2c={"sigma": 0.2})
    lo, hi = xbar.device_bounds()
    assert np.all(lo > 0) and np.all(hi > lo)
    for _ in range(25):
        counts = rng.integers(0, 9, size=xbar.shape)
        up = rng.random(xbar.shape) < 0.5
        xbar.apply(
            PulsePlan.from_groups(
                xbar.shape,
                [
                    PulseGroup(preset.set_pulse, np.where(up, counts, 0)),
                    PulseGroup(preset.reset_pulse, np.where(up, 0, counts)),
                ],
            )
        )
        g = xbar.conductances()
        assert np.all(g >= lo) and np.all(g <= hi)
        assert np.all(xbar.read() >= lo) and np.all(xbar.read() <= hi)


NEUROSIM_PRESETS = [n for n, p in PRESETS.items() if isinstance(p.model, NeuroSimModel)]


@pytest.mark.parametrize("name", NEUROSIM_PRESETS)
def test_ltp_ltd_follow_the_neurosim_curves(name: str) -> None:
    preset = get_preset(name)
    model = preset.model
    assert isinstance(model, NeuroSimModel)
    xbar = SimulatedCrossbar(1, 3, preset=name, seed=0, **QUIET)
    g_lo, g_hi = (b.ravel() for b in xbar.device_bounds())
    steps_up = round(model.states_ltp)
    up = trace(xbar, preset.set_pulse, steps_up + 3)
    steps_dn = round(model.states_ltd)
    down = trace(xbar, preset.reset_pulse, steps_dn + 3)
    # Monotone, and the window is reached after the nominal number of pulses.
    assert np.all(np.diff(up[: steps_up + 1], axis=0) > 0)
    assert np.all(np.diff(down[: steps_dn + 1], axis=0) < 0)
    # (float32 state: 1000 single-pulse updates leave rounding of ~1e-5 of the window)
    tol = 2e-5 * (g_hi - g_lo)
    assert np.all(np.abs(up[steps_up:] - g_hi) <= tol)
    assert np.all(np.abs(down[steps_dn:] - g_lo) <= tol)
    # Agrees with the independent closed form of protocols.response (log / exp route).
    resp = NeuroSimResponse(
        g_min_s=float(g_lo[0]),
        g_max_s=float(g_hi[0]),
        states_ltp=steps_up,
        states_ltd=steps_dn,
        nl_ltp=model.nl_ltp,
        nl_ltd=model.nl_ltd,
    )
    k = np.arange(steps_up + 1)
    expected_up = resp.after_pulses(np.full(k.shape, resp.g_min_s), k)
    np.testing.assert_allclose(
        up[: steps_up + 1, 0], expected_up, atol=2e-5 * (resp.g_max_s - resp.g_min_s)
    )
    k = np.arange(steps_dn + 1)
    expected_dn = resp.after_pulses(np.full(k.shape, resp.g_max_s), -k)
    np.testing.assert_allclose(
        down[: steps_dn + 1, 0], expected_dn, atol=2e-5 * (resp.g_max_s - resp.g_min_s)
    )
    # A least-squares NL fit of the simulated traces recovers the preset's labels.
    labels = np.linspace(-9.0, 9.0, 3601)

    def fit(rise: np.ndarray, sign: float) -> float:
        p = np.linspace(0.0, 1.0, rise.size)
        errs = [np.sum((curve(p, nl_to_a(sign * lab)) - rise) ** 2) for lab in labels]
        return float(labels[int(np.argmin(errs))])

    span = float(g_hi[0] - g_lo[0])
    rise_up = (up[: steps_up + 1, 0] - g_lo[0]) / span
    rise_dn = (g_hi[0] - down[: steps_dn + 1, 0]) / span
    assert fit(rise_up, 1.0) == pytest.approx(model.nl_ltp, abs=0.02)
    assert fit(rise_dn, -1.0) == pytest.approx(model.nl_ltd, abs=0.02)


def test_ideal_preset_is_linear_and_symmetric() -> None:
    xbar = SimulatedCrossbar(2, 2, preset="ideal", seed=0)
    preset = get_preset("ideal")
    up = trace(xbar, preset.set_pulse, 10)
    steps = np.diff(up[:, 0])
    np.testing.assert_allclose(steps, (100e-6 - 1e-6) / 1000, rtol=1e-4)
    xbar.apply(plan(xbar.shape, preset.reset_pulse, 10))
    # float32 state: rounding stays far below one step (1e-3 of the window).
    np.testing.assert_allclose(xbar.conductances(), 1e-6, atol=1e-5 * 99e-6)


def test_neurosim_amplitude_and_width_law() -> None:
    """Threshold law: (|V| - V_th) / (|V_nom| - V_th) times t / t_nom nominal pulses."""
    preset = get_preset("ideal")  # linear, so the step is proportional to the pulse's worth
    law = preset.law
    nominal = preset.set_pulse

    def step(pulse: PulseShape) -> float:
        xbar = SimulatedCrossbar(1, 1, preset="ideal", seed=0, initial="mid")
        g0 = xbar.conductances()[0, 0]
        xbar.apply(plan(xbar.shape, pulse, 1))
        return float(xbar.conductances()[0, 0] - g0)

    base = step(nominal)
    assert base > 0
    below = PulseShape(amplitude_v=law.v_threshold_set_v * 0.99, width_s=nominal.width_s)
    assert step(below) == 0.0
    assert step(PulseShape(amplitude_v=nominal.amplitude_v / 2, width_s=nominal.width_s)) == 0.0
    bigger = PulseShape(amplitude_v=2.4, width_s=nominal.width_s)
    worth = (2.4 - law.v_threshold_set_v) / (nominal.amplitude_v - law.v_threshold_set_v)
    assert step(bigger) == pytest.approx(worth * base, rel=1e-4)
    longer = PulseShape(amplitude_v=nominal.amplitude_v, width_s=3 * nominal.width_s)
    assert step(longer) == pytest.approx(3 * base, rel=1e-4)


def test_vteam_threshold_amplitude_and_width() -> None:
    preset = get_preset("vteam")
    quiet = {"c2c": {"sigma": 0.0}}
    width = preset.set_pulse.width_s

    def moved(pulse: PulseShape, bias: str = "none") -> tuple[np.ndarray, np.ndarray]:
        xbar = SimulatedCrossbar(6, 6, preset="vteam", seed=2, initial="mid", **quiet)
        g0 = xbar.conductances()
        counts = np.zeros(xbar.shape, dtype=np.int64)
        counts[2, 3] = 5
        xbar.apply(plan(xbar.shape, pulse, counts, bias=bias))
        return xbar.conductances() - g0, counts > 0

    # Reads and sub-threshold pulses leave every device exactly where it was.
    for amp in (0.2, 0.5, 0.85, -0.85):
        dg, _ = moved(PulseShape(amplitude_v=amp, width_s=1e-3))
        assert np.all(dg == 0.0)
    # Nominal pulses under V/2 and V/3 biasing: half-selected devices do not move.
    for bias in ("v2", "v3"):
        dg, sel = moved(preset.set_pulse, bias)
        assert dg[sel][0] > 0
        assert np.all(dg[~sel] == 0.0)
    # Larger or longer pulses move the selected device further.
    d_nom = moved(preset.set_pulse)[0][2, 3]
    d_big = moved(PulseShape(amplitude_v=1.8, width_s=width))[0][2, 3]
    d_long = moved(PulseShape(amplitude_v=1.6, width_s=2 * width))[0][2, 3]
    assert d_big > d_nom > 0
    assert d_long > d_nom
    d_reset = moved(preset.reset_pulse)[0][2, 3]
    assert d_reset < 0


def test_vteam_state_step_follows_the_integrated_rate() -> None:
    """No window: dw = k (V/v_th - 1)^alpha t per pulse exactly, and G = 1/R(w)."""
    preset = get_preset("vteam")
    model = preset.model
    xbar = SimulatedCrossbar(1, 1, preset="vteam", seed=0, **QUIET)
    pulse = PulseShape(amplitude_v=1.7, width_s=50e-9)
    xbar.apply(plan(xbar.shape, pulse, 3))
    dw = model.k_set_per_s * (1.7 / model.v_set_v - 1.0) ** model.alpha_set * 50e-9  # type: ignore[union-attr]
    assert float(xbar.states()[0, 0]) == pytest.approx(3 * dw, rel=1e-5)
    r = model.r_off_ohm - (model.r_off_ohm - model.r_on_ohm) * 3 * dw  # type: ignore[union-attr]
    assert xbar.conductances()[0, 0] == pytest.approx(1.0 / r, rel=1e-5)


def test_soft_bounds_steps_shrink_toward_the_bound() -> None:
    xbar = SimulatedCrossbar(1, 1, preset="soft_bounds", seed=0, **QUIET)
    preset = get_preset("soft_bounds")
    up = trace(xbar, preset.set_pulse, 50)[:, 0]
    steps = np.diff(up)
    assert np.all(steps > 0) and np.all(np.diff(steps) < 0)
    span = preset.g_max_s - preset.g_min_s
    assert steps[0] == pytest.approx(0.0016 * span, rel=1e-4)


@pytest.mark.parametrize("name", ["vteam", "soft_bounds"])
def test_fitted_response_tracks_the_model(name: str) -> None:
    """Non-NeuroSim presets publish an approximate NeuroSim response fitted to their traces."""
    preset = get_preset(name)
    resp = mean_response(preset)
    assert isinstance(resp, NeuroSimResponse)
    xbar = SimulatedCrossbar(1, 1, preset=name, seed=0, **QUIET)
    up = trace(xbar, preset.set_pulse, resp.states_ltp)[:, 0]
    k = np.arange(up.size)
    predicted = resp.after_pulses(np.full(k.shape, resp.g_min_s), k)
    assert np.max(np.abs(predicted - up)) < 0.1 * (resp.g_max_s - resp.g_min_s)


def test_presets_expose_pulses_thresholds_and_sources() -> None:
    for name, preset in PRESETS.items():
        assert preset.name == name
        assert preset.set_pulse.amplitude_v > preset.threshold_set_v
        assert -preset.reset_pulse.amplitude_v > preset.threshold_reset_v
        assert preset.source
        resp = mean_response(preset)
        assert resp.g_min_s == pytest.approx(preset.g_min_s)
        assert resp.g_max_s == pytest.approx(preset.g_max_s)


def test_literature_values_of_the_neurosim_presets() -> None:
    expect = {
        "ag_asi": (97, 100, 2.4, -4.88, 12.5, 0.035),
        "taox_hfox": (128, 128, 0.04, -0.63, 10.0, 0.037),
        "alox_hfo2": (40, 40, 1.94, -0.61, 4.43, 0.05),
        "pcmo": (50, 50, 3.68, -6.76, 6.84, 0.005),
    }
    for name, (s_up, s_dn, nl_up, nl_dn, on_off, c2c) in expect.items():
        preset = get_preset(name)
        model = preset.model
        assert isinstance(model, NeuroSimModel)
        assert (model.states_ltp, model.states_ltd) == (s_up, s_dn)
        assert (model.nl_ltp, model.nl_ltd) == (nl_up, nl_dn)
        assert model.g_max_s / model.g_min_s == pytest.approx(on_off, rel=0.01)
        assert preset.c2c.sigma == c2c


def test_bad_presets_and_overrides_are_named() -> None:
    with pytest.raises(InputError, match=r"unknown device preset 'nope'.*ideal"):
        SimulatedCrossbar(2, 2, preset="nope")
    with pytest.raises(InputError, match=r"c2c\.'sigmaa'"):
        SimulatedCrossbar(2, 2, c2c={"sigmaa": 0.1})
    with pytest.raises(InputError, match=r"c2c\.sigma"):
        SimulatedCrossbar(2, 2, c2c__sigma=-1.0)
    with pytest.raises(InputError, match="threshold"):
        SimulatedCrossbar(2, 2, set_pulse={"amplitude_v": 0.5})
    xbar = SimulatedCrossbar(2, 2, c2c__sigma=0.01, levels=64)
    assert xbar.config.c2c.sigma == 0.01 and xbar.config.levels == 64


def test_exact_rule_matches_the_neurosim_closed_form() -> None:
    """Rule x' = x + (x - x_inf) expm1(n lam) equals protocols' inverse-advance-curve route."""
    reach = Reach("test_exact_rule_matches_the_neurosim_closed_form")

    @settings(max_examples=examples(60))
    @given(
        nl_ltp=st.floats(-6.0, 6.0),
        nl_ltd=st.floats(-6.0, 6.0),
        states=st.integers(8, 400),
        start=st.floats(0.0, 1.0),
        n=st.integers(-30, 30).filter(lambda v: v != 0),
    )
    def check(nl_ltp: float, nl_ltd: float, states: int, start: float, n: int) -> None:
        reach.example()
        model = NeuroSimModel(
            g_min_s=2e-6,
            g_max_s=20e-6,
            states_ltp=states,
            states_ltd=states,
            nl_ltp=nl_ltp,
            nl_ltd=nl_ltd,
        )
        preset = get_preset("ideal").with_overrides(model=model, initial=start)
        xbar = SimulatedCrossbar(1, 1, preset=preset, seed=0)
        g0 = float(xbar.conductances()[0, 0])
        pulse = preset.set_pulse if n > 0 else preset.reset_pulse
        xbar.apply(plan(xbar.shape, pulse, abs(n)))
        resp = NeuroSimResponse(
            g_min_s=2e-6,
            g_max_s=20e-6,
            states_ltp=states,
            states_ltd=states,
            nl_ltp=nl_ltp,
            nl_ltd=nl_ltd,
        )
        expected = float(resp.after_pulses(np.array([g0]), np.array([n]))[0])
        if abs(expected - g0) > 2e-6 * 18e-6:  # a change larger than the tolerance
            reach.hit("the device moved")
        assert xbar.conductances()[0, 0] == pytest.approx(expected, abs=2e-6 * 18e-6)

    check()
    reach.require("the device moved", 0.5)


@pytest.mark.parametrize("nl_ltd", [6.0, 8.0, 8.7])
def test_strongly_convex_ltd_still_leaves_g_max(nl_ltd: float) -> None:
    """A convex LTD curve starts within 1e-7 of G_max; the float32 state must still move."""
    model = {
        "kind": "neurosim",
        "g_min_s": 1e-6,
        "g_max_s": 1e-5,
        "states_ltp": 50,
        "states_ltd": 50,
        "nl_ltp": 1.0,
        "nl_ltd": nl_ltd,
    }
    xbar = SimulatedCrossbar(1, 2, preset="ideal", initial="max", model=model)
    down = trace(xbar, xbar.config.reset_pulse, 53)[:, 0]
    assert np.all(np.isfinite(down))
    assert np.all(np.diff(down[:50]) < 0)
    assert down[52] == pytest.approx(1e-6, rel=1e-6)
    assert down[45] > 1e-6 + 0.3 * 9e-6  # convex: most of the fall comes in the last pulses
