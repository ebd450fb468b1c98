"""Nonidealities of the simulator, checked statistically against their configuration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from protocols.plan import PulseGroup, PulsePlan, PulseShape
from protocols.response import nl_to_a
from sim_backend import SimulatedCrossbar, get_preset
from sim_backend.config import DeviceToDevice
from sim_backend.devices import TRUNCATE_SIGMA

IDEAL = get_preset("ideal")
SET = IDEAL.set_pulse
RESET = IDEAL.reset_pulse
#: Standard deviation of a standard normal truncated at +-3 sigma.
TRUNC_STD = math.sqrt(
    1.0
    - 2.0
    * TRUNCATE_SIGMA
    * math.exp(-(TRUNCATE_SIGMA**2) / 2)
    / math.sqrt(2 * math.pi)
    / math.erf(TRUNCATE_SIGMA / math.sqrt(2))
)


def plan(
    shape: tuple[int, int], pulse: PulseShape, counts: object, bias: str = "none"
) -> PulsePlan:
    c = np.broadcast_to(np.asarray(counts, dtype=np.int64), shape).copy()
    return PulsePlan.from_groups(shape, [PulseGroup(pulse, c)], bias=bias)  # type: ignore[arg-type]


def std_tolerance(n: int) -> float:
    """Four standard errors of a sample standard deviation from n normal samples."""
    return 4.0 / math.sqrt(2.0 * (n - 1))


@pytest.mark.parametrize("sampling", ["buffered", "exact"])
@pytest.mark.parametrize("pulses", [1, 4])
def test_cycle_to_cycle_spread_matches_sigma(sampling: str, pulses: int) -> None:
    sigma = 0.01
    xbar = SimulatedCrossbar(
        64, 64, preset="ideal", seed=7, initial="mid", c2c={"sigma": sigma, "sampling": sampling}
    )
    x0 = xbar.states().astype(np.float64)
    xbar.apply(plan(xbar.shape, SET, pulses))
    dx = xbar.states().astype(np.float64) - x0
    n = dx.size
    assert dx.mean() == pytest.approx(pulses / 1000, abs=4 * sigma * math.sqrt(pulses / n))
    expected = sigma * math.sqrt(pulses)
    assert dx.std(ddof=1) == pytest.approx(expected, rel=std_tolerance(n))


def test_cycle_to_cycle_noise_is_fresh_from_pulse_to_pulse() -> None:
    """Repeated pulses on one device accumulate independent noise (variance grows as n)."""
    sigma = 0.004
    xbar = SimulatedCrossbar(32, 32, preset="ideal", seed=8, initial="mid", c2c={"sigma": sigma})
    x0 = xbar.states().astype(np.float64)
    for _ in range(100):  # crosses the noise buffer's redraw period (64 uses)
        xbar.apply(plan(xbar.shape, SET, 1))
        xbar.apply(plan(xbar.shape, RESET, 1))
    dx = xbar.states().astype(np.float64) - x0
    assert dx.std(ddof=1) == pytest.approx(sigma * math.sqrt(200), rel=std_tolerance(dx.size))


def test_device_to_device_spread_of_bounds_and_steps() -> None:
    rel = 0.1
    xbar = SimulatedCrossbar(
        64,
        64,
        preset="ideal",
        seed=9,
        initial="mid",
        d2d={"g_max_rel_sigma": rel, "g_min_rel_sigma": rel / 2, "states_rel_sigma": rel},
    )
    lo, hi = xbar.device_bounds()
    n = lo.size
    tol = std_tolerance(n)
    assert hi.std(ddof=1) / 100e-6 == pytest.approx(rel * TRUNC_STD, rel=tol)
    assert lo.std(ddof=1) / 1e-6 == pytest.approx(rel / 2 * TRUNC_STD, rel=tol)
    assert hi.mean() == pytest.approx(100e-6, rel=4 * rel / math.sqrt(n))
    # States spread: the step of one pulse is 1 / P_device, P_device = 1000 (1 + rel z).
    x0 = xbar.states().astype(np.float64)
    xbar.apply(plan(xbar.shape, SET, 1))
    steps = xbar.states().astype(np.float64) - x0
    assert (1.0 / steps / 1000).std(ddof=1) == pytest.approx(rel * TRUNC_STD, rel=tol)


def test_device_to_device_spread_of_nonlinearity() -> None:
    """Per-device NL ~ N(NL, sigma): fitted from each device's first and middle steps."""
    from protocols.response import a_to_nl

    sigma_nl = 0.5
    xbar = SimulatedCrossbar(
        40, 40, preset="alox_hfo2", seed=10, d2d=DeviceToDevice(nl_sigma=sigma_nl), c2c={"sigma": 0}
    )
    # For the NeuroSim curve the state after p pulses is x_inf (1 - r^p), r = e^{-1/(a P)}:
    # two points of the trace give r, hence a per device.
    pulse = get_preset("alox_hfo2").set_pulse
    xbar.apply(plan(xbar.shape, pulse, 10))
    x10 = xbar.states().astype(np.float64)
    xbar.apply(plan(xbar.shape, pulse, 10))
    x20 = xbar.states().astype(np.float64)
    r10 = (x20 - x10) / x10  # = r^10
    a = -10.0 / (40 * np.log(r10))
    nl = a_to_nl(a)
    n = nl.size
    assert nl.mean() == pytest.approx(1.94, abs=4 * sigma_nl / math.sqrt(n))
    assert nl.std(ddof=1) == pytest.approx(sigma_nl * TRUNC_STD, rel=0.1)


def test_stuck_at_fault_rates_and_pinning() -> None:
    p_low, p_high = 0.05, 0.02
    xbar = SimulatedCrossbar(
        100,
        100,
        preset="ideal",
        seed=12,
        initial="mid",
        faults={"stuck_min_rate": p_low, "stuck_max_rate": p_high},
    )
    n = 100 * 100
    g = xbar.conductances()
    low = np.isclose(g, 1e-6, rtol=1e-6)
    high = np.isclose(g, 100e-6, rtol=1e-6)
    for count, p in ((low.sum(), p_low), (high.sum(), p_high)):
        assert abs(count - n * p) < 4 * math.sqrt(n * p * (1 - p))
    np.testing.assert_array_equal(xbar.stuck_mask, low | high)
    xbar.apply(plan(xbar.shape, SET, 20))
    xbar.apply(plan(xbar.shape, RESET, 5))
    g2 = xbar.conductances()
    np.testing.assert_array_equal(g2[low], g[low])
    np.testing.assert_array_equal(g2[high], g[high])
    assert np.all(g2[~(low | high)] > g[~(low | high)])


def test_finite_levels() -> None:
    xbar = SimulatedCrossbar(8, 8, preset="taox_hfox", seed=1, levels=16)
    rng = np.random.default_rng(0)
    xbar.apply(plan(xbar.shape, SET, rng.integers(0, 30, size=xbar.shape)))
    x = xbar.states().astype(np.float64) * 15
    np.testing.assert_allclose(x, np.round(x), atol=1e-5)
    assert len(np.unique(np.round(x))) > 3


def test_read_noise_is_relative_and_fresh() -> None:
    sigma = 0.03
    xbar = SimulatedCrossbar(
        50, 50, preset="ideal", seed=3, initial="mid", readout={"read_sigma": sigma}
    )
    g = xbar.conductances()
    r1 = xbar.read() / g - 1.0
    r2 = xbar.read() / g - 1.0
    tol = std_tolerance(r1.size)
    assert r1.std(ddof=1) == pytest.approx(sigma, rel=tol)
    assert abs(np.corrcoef(r1.ravel(), r2.ravel())[0, 1]) < 0.1
    # The analog product carries the same per-device noise, summed on each column.
    v = np.full(50, 0.1)
    currents = np.array([xbar.mvm(v) for _ in range(200)])
    expected_sd = sigma * np.sqrt((v**2) @ (g**2))
    measured_sd = currents.std(axis=0, ddof=1)
    assert np.median(measured_sd / expected_sd) == pytest.approx(1.0, rel=0.1)


def test_adc_and_dac_quantise_the_analog_product() -> None:
    bits = 6
    xbar = SimulatedCrossbar(
        8, 5, preset="taox_hfox", seed=2, readout={"adc_bits": bits, "dac_bits": 8}
    )
    v = np.linspace(-0.3, 0.3, 8)
    i = xbar.mvm(v)
    full_scale = 8 * 0.3 * get_preset("taox_hfox").g_max_s
    step = full_scale / (2 ** (bits - 1) - 1)
    np.testing.assert_allclose(i / step, np.round(i / step), atol=1e-9)
    exact = v @ xbar.conductances()
    assert np.all(np.abs(i - exact) <= step / 2 + 1e-3 * np.abs(exact) + 1e-12)


def test_soft_threshold_half_select_disturb_v2_and_v3() -> None:
    """With an exponential (soft) threshold, half-selected cells drift; V/3 puts opposite
    polarity on cells off the selected lines; with no bias scheme nothing else moves."""
    law = {"kind": "exponential", "v_slope_v": 0.3}
    kw = {"preset": "ideal", "seed": 0, "initial": "mid", "law": law}
    counts = np.zeros((5, 6), dtype=np.int64)
    counts[1, 2] = 10
    same_line = np.zeros((5, 6), dtype=bool)
    same_line[1, :] = True
    same_line[:, 2] = True
    same_line[1, 2] = False
    off_line = ~same_line
    off_line[1, 2] = False
    results = {}
    for bias in ("none", "v2", "v3"):
        xbar = SimulatedCrossbar(5, 6, **kw)  # type: ignore[arg-type]
        x0 = xbar.states().astype(np.float64)
        xbar.apply(plan(xbar.shape, SET, counts, bias=bias))
        results[bias] = xbar.states().astype(np.float64) - x0
    assert np.all(results["none"][same_line | off_line] == 0.0)
    dv2 = results["v2"]
    # A half-select at V/2 is worth exp(-V/2 / v_slope) nominal pulses, 10 times.
    worth = math.exp(-1.0 / 0.3) * 10 / 1000
    np.testing.assert_allclose(dv2[same_line], worth, rtol=1e-3)
    assert np.all(dv2[off_line] == 0.0)
    dv3 = results["v3"]
    worth3 = math.exp((2.0 / 3.0 - 2.0) / 0.3) * 10 / 1000
    np.testing.assert_allclose(dv3[same_line], worth3, rtol=1e-3)
    np.testing.assert_allclose(dv3[off_line], -worth3, rtol=1e-3)


def test_parallel_delivery_half_selects_only_active_lines() -> None:
    law = {"kind": "exponential", "v_slope_v": 0.3}
    xbar = SimulatedCrossbar(4, 4, preset="ideal", seed=0, initial="mid", law=law)
    counts = np.zeros((4, 4), dtype=np.int64)
    counts[0, 0] = 3
    counts[0, 1] = 1
    x0 = xbar.states().astype(np.float64)
    group = PulseGroup(SET, counts, parallel=True)
    xbar.apply(PulsePlan.from_groups(xbar.shape, [group], bias="v2"))
    dx = xbar.states().astype(np.float64) - x0
    one = math.exp(-1.0 / 0.3) / 1000
    # Row 0 active for 3 phases; column 0 for 3, column 1 for 1.
    expected_phases = np.array(
        [[0, 2, 3, 3], [3, 1, 0, 0], [3, 1, 0, 0], [3, 1, 0, 0]], dtype=float
    )
    half = np.ones((4, 4), dtype=bool)
    half[0, 0] = half[0, 1] = False
    np.testing.assert_allclose(dx[half], expected_phases[half] * one, rtol=1e-3, atol=1e-12)


@pytest.mark.parametrize("name", ["ideal", "vteam"])
def test_power_law_drift_and_relaxation(name: str) -> None:
    nu = 0.05
    xbar = SimulatedCrossbar(
        20, 20, preset=name, seed=4, initial="max", drift={"nu": nu, "t0_s": 1.0}, c2c__sigma=0.0
    )
    set_pulse = get_preset(name).set_pulse
    g0 = xbar.conductances()
    xbar.elapse(99.0)
    expected = g0 * 100.0 ** (-nu)
    np.testing.assert_allclose(xbar.conductances(), expected, rtol=1e-5)
    assert xbar.time_s == 99.0
    # Programming resets a device's clock: a pulsed device drifts from its new age 0.
    counts = np.zeros(xbar.shape, dtype=np.int64)
    counts[0, 0] = 1
    xbar.apply(plan(xbar.shape, set_pulse, counts))
    g1 = xbar.conductances()
    xbar.elapse(99.0)
    g2 = xbar.conductances()
    assert g2[0, 0] / g1[0, 0] == pytest.approx(100.0 ** (-nu), rel=1e-5)
    assert g2[1, 1] / g1[1, 1] == pytest.approx((199.0 / 100.0) ** (-nu), rel=1e-5)
    sigma = 0.01
    rx = SimulatedCrossbar(
        40, 40, preset="ideal", seed=5, initial="mid", drift={"relax_sigma": sigma}
    )
    x0 = rx.states().astype(np.float64)
    rx.elapse(999.0)
    spread = (rx.states().astype(np.float64) - x0).std(ddof=1)
    assert spread == pytest.approx(sigma * math.sqrt(3.0), rel=std_tolerance(1600))


def test_endurance_wears_out_switching() -> None:
    xbar = SimulatedCrossbar(
        2, 2, preset="ideal", seed=0, endurance={"degrade_after": 40, "fail_after": 60}
    )
    steps = []
    for _ in range(8):
        x0 = xbar.states()[0, 0]
        xbar.apply(plan(xbar.shape, SET, 10))
        steps.append(float(xbar.states()[0, 0] - x0))
    # Full steps until 40 pulses, smaller between 40 and 60, none after 60.
    np.testing.assert_allclose(steps[:4], 10 / 1000, rtol=1e-4)
    assert steps[4] == pytest.approx(10 / 1000, rel=1e-4)  # factor evaluated at 40 pulses
    assert 0 < steps[5] < steps[4]
    assert steps[6] == 0.0 and steps[7] == 0.0


def test_same_seed_same_array_other_seed_other_array() -> None:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        xbar = SimulatedCrossbar(
            16, 16, preset="taox_hfox", seed=seed, faults={"stuck_min_rate": 0.05}
        )
        rng = np.random.default_rng(1)
        for _ in range(5):
            xbar.apply(plan(xbar.shape, SET, rng.integers(0, 5, size=xbar.shape)))
            xbar.apply(plan(xbar.shape, RESET, rng.integers(0, 3, size=xbar.shape)))
        return xbar.conductances(), xbar.read()

    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_overdriven_convex_devices_saturate_without_nan() -> None:
    """Overdriven convex curves overflow float32 on the way to their bound: no NaN, no
    floating-point warning, and the device ends exactly at the bound."""
    law = {"kind": "exponential", "v_slope_v": 0.3}
    model = {
        "kind": "neurosim",
        "g_min_s": 1e-6,
        "g_max_s": 1e-5,
        "states_ltp": 5,
        "states_ltd": 20,
        "nl_ltp": -8.0,
        "nl_ltd": 8.0,
    }
    xbar = SimulatedCrossbar(6, 6, preset="ideal", seed=0, initial="mid", law=law, model=model)
    counts = np.full((6, 6), 60, dtype=np.int64)
    with np.errstate(all="raise"):  # the engine must not leak floating-point warnings
        xbar.apply(plan(xbar.shape, SET, counts, bias="v3"))
        xbar.apply(plan(xbar.shape, RESET, counts, bias="v3"))
    x = xbar.states()
    assert np.all(np.isfinite(x)) and np.all((x >= 0.0) & (x <= 1.0))
    # One more SET plan of 60 nominal pulses on a 5-state convex curve: e^{n lam} overflows
    # float32 (n lam > 89) for every device, and each lands exactly on G_max.
    lam = -1.0 / (float(nl_to_a(-8.0)) * 5)
    assert 60 * lam > 89
    with np.errstate(all="raise"):
        xbar.apply(plan(xbar.shape, SET, counts))
    np.testing.assert_array_equal(xbar.states(), 1.0)


def _plan_noise(xbar: SimulatedCrossbar, plans: int) -> list[np.ndarray]:
    """The C2C noise field of each of `plans` one-pulse SET plans on the ideal (linear) device:
    the state change minus its mean (the deterministic step)."""
    fields = []
    for _ in range(plans):
        x0 = xbar.states().astype(np.float64)
        xbar.apply(plan(xbar.shape, SET, 1))
        dx = (xbar.states().astype(np.float64) - x0).reshape(-1)
        fields.append((dx - dx.mean()) / dx.std())
    return fields


def _max_lagged_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |correlation| of b with a shifted by any lag (FFT, zero-padded: no wrap)."""
    size = 2 * a.size
    xc = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    return float(np.abs(xc).max() / a.size)


def test_default_cycle_to_cycle_noise_of_consecutive_plans_is_uncorrelated_at_every_shift() -> None:
    """A researcher correlating the noise fields of two plans finds nothing at any device
    offset: neither the same device (lag 0) nor a neighbour, nor a far shift of the array."""
    xbar = SimulatedCrossbar(256, 256, preset="ideal", seed=3, initial="mid", c2c={"sigma": 0.01})
    fields = _plan_noise(xbar, 3)
    n = fields[0].size
    # Independent fields: each lag is N(0, <= 1/n); the max over 2n lags stays below ~5/sqrt(n).
    bound = 7.0 / math.sqrt(n)
    for a, b in itertools.pairwise(fields):
        assert abs(float(np.dot(a, b)) / n) < 5.0 / math.sqrt(n)
        assert _max_lagged_correlation(a, b) < bound


def test_buffered_cycle_to_cycle_noise_reuses_the_field_of_the_previous_plan() -> None:
    """The opt-in buffered mode's documented price: one plan's noise reappears, shifted."""
    xbar = SimulatedCrossbar(
        256, 256, preset="ideal", seed=3, initial="mid", c2c={"sigma": 0.01, "sampling": "buffered"}
    )
    a, b = _plan_noise(xbar, 2)
    assert _max_lagged_correlation(a, b) > 0.1
