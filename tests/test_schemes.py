"""Programming schemes: no plan ever breaks a limit; stochastic rounding is unbiased."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from property_support import Reach, examples

from hil.insitu.programming import program
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulsePlan
from protocols.response import NeuroSimResponse, curve, curve_inverse
from protocols.schemes import WriteVerifyPlanner, expected_after, plan_update, plan_update_detailed
from protocols.schemes.common import signed_step
from protocols.spec import (
    ManhattanScheme,
    OuterProductScheme,
    ProportionalScheme,
    Pulse,
    PulsePair,
    WriteVerifyScheme,
)
from sim_backend.crossbar import SimulatedCrossbar
from sim_backend.fit import mean_response

LINEAR = NeuroSimResponse(
    g_min_s=1e-6, g_max_s=100e-6, states_ltp=1000, states_ltd=1000, nl_ltp=0.0, nl_ltd=0.0
)
STEP = (LINEAR.g_max_s - LINEAR.g_min_s) / 1000
NOMINAL = PulsePair(
    set=Pulse(amplitude_v=2.0, width_s=10e-9), reset=Pulse(amplitude_v=-2.0, width_s=10e-9)
)
ROOMY = SafetyLimits(max_energy_per_update_j=1.0, compliance_a=0.1)


def _pair(v_set: float, v_reset: float, width: float) -> PulsePair:
    return PulsePair(
        set=Pulse(amplitude_v=v_set, width_s=width),
        reset=Pulse(amplitude_v=-v_reset, width_s=width),
    )


def _assert_within(
    plan: PulsePlan,
    limits: SafetyLimits,
    g_peak: np.ndarray,
    run_counts: np.ndarray | None,
) -> None:
    """The limits, checked here from the plan itself (not through check_plan)."""
    per_device = np.zeros(plan.shape, dtype=np.int64)
    energy = 0.0
    for group in plan.groups:
        used = group.counts > 0
        if not used.any():
            continue
        amp, width = group.shape.amplitude_v, group.shape.width_s
        assert (amp <= limits.max_set_v) if amp > 0 else (-amp <= limits.max_reset_v)
        assert width <= limits.max_width_s
        assert np.all(abs(amp) * g_peak[used] <= limits.compliance_a * (1 + 1e-12))
        if limits.max_half_select_v is not None and plan.bias != "none":
            assert abs(amp) / (2.0 if plan.bias == "v2" else 3.0) <= limits.max_half_select_v
        per_device += group.counts
        energy += amp * amp * width * float((g_peak * group.counts).sum())
    assert per_device.max() <= limits.max_pulses_per_device_per_update
    assert energy <= limits.max_energy_per_update_j * (1 + 1e-9)
    if run_counts is not None:
        assert np.all(run_counts + per_device <= limits.max_pulses_per_device_per_run)


def _peak(plan: PulsePlan, g: np.ndarray, response: NeuroSimResponse) -> np.ndarray:
    peak = g.copy()
    cur = g.copy()
    for group in plan.groups:
        cur = response.after_pulses(cur, group.shape.polarity * group.counts)
        peak = np.maximum(peak, cur)
    return peak


schemes = st.one_of(
    st.builds(
        ManhattanScheme,
        kind=st.just("manhattan"),
        threshold_steps=st.floats(0.0, 2.0),
        bias=st.sampled_from(["none", "v2", "v3"]),
    ),
    st.builds(
        ProportionalScheme,
        kind=st.just("proportional"),
        count=st.sampled_from(["step", "inverse"]),
        rounding=st.sampled_from(["stochastic", "nearest"]),
        max_pulses=st.integers(1, 64),
        bias=st.sampled_from(["none", "v2", "v3"]),
    ),
    st.builds(
        OuterProductScheme,
        kind=st.just("outer_product"),
        bias=st.sampled_from(["v2", "v3"]),
        rank=st.sampled_from([1, 2]),
        max_pulses=st.integers(1, 64),
    ),
)


def _log_floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(np.log10(lo), np.log10(hi)).map(lambda e: float(10.0**e))


limit_sets = st.builds(
    SafetyLimits,
    max_set_v=st.floats(1.0, 6.0),
    max_reset_v=st.floats(1.0, 6.0),
    max_width_s=_log_floats(1e-8, 1e-3),
    compliance_a=_log_floats(1e-5, 1e-2),
    max_pulses_per_device_per_update=st.integers(1, 64),
    max_pulses_per_device_per_run=st.integers(1, 400),
    max_energy_per_update_j=_log_floats(1e-14, 1e-6),
    max_half_select_v=st.one_of(st.none(), st.floats(0.3, 3.0)),
)


@st.composite
def scheme_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "shape": draw(st.tuples(st.integers(1, 6), st.integers(1, 6))),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "nl": draw(st.tuples(st.floats(-5, 5), st.floats(-5, 5))),
        "states": draw(st.integers(8, 400)),
        "scale": draw(st.floats(0.01, 0.5)),
        # which way the devices are asked to move: a plan of RESET groups only is where a
        # check that ignores RESET polarity lets something through
        "direction": draw(st.sampled_from([-1.0, 0.0, 1.0])),
        # how much of the run budget the devices have used: up to all of it
        "used": draw(st.sampled_from([0.0, 0.5, 0.9, 1.0])),
        "scheme": draw(schemes),
        "limits": draw(limit_sets),
        # SET amplitude / max_set_v, RESET amplitude / max_reset_v, width / max_width_s,
        # compliance / current at the top of the window, energy limit / one pulse per device
        "slack": draw(
            st.tuples(
                st.floats(0.3, 1.15),
                st.floats(0.3, 1.15),
                st.floats(0.1, 1.15),
                _log_floats(0.05, 10.0),
                _log_floats(0.002, 300.0),
            )
        ),
    }


#: The limits whose refusals the property must see (each message names its limit); the
#: per-update count is left out: a scheme caps its own pulses, so it rarely binds.
REFUSALS = (
    "max_set_v",
    "max_reset_v",
    "max_width_s",
    "compliance_a",
    "max_half_select_v",
    "max_pulses_per_device_per_run",
    "max_energy_per_update_j",
)


def edge(**changes: Any) -> dict[str, Any]:
    """A fixed case of `scheme_cases` on the edge of one limit (`changes`)."""
    base: dict[str, Any] = {
        "shape": (3, 3),
        "seed": 1,
        "nl": (0.0, 0.0),
        "states": 100,
        "scale": 0.3,
        "direction": 0.0,
        "used": 0.0,
        "scheme": ProportionalScheme(kind="proportional", rounding="nearest", max_pulses=16),
        "limits": SafetyLimits(max_width_s=1e-6, max_pulses_per_device_per_run=400),
        "slack": (0.8, 0.8, 0.5, 10.0, 1000.0),
    }
    slack = list(base["slack"])
    for k, v in changes.pop("slack", {}).items():
        slack[k] = v
    return {**base, "slack": tuple(slack), **changes}


#: One fixed example per limit, run on every run whatever the draws (which shift with
#: the modules a run has imported): each is refused by its own limit, so a check that is
#: skipped lets a plan through and the property fails.
EDGES = {
    "max_set_v": edge(direction=1.0, slack={0: 1.1}),
    "max_reset_v": edge(direction=-1.0, slack={1: 1.1}),
    "max_width_s": edge(slack={2: 1.1}),
    "compliance_a at RESET polarity": edge(direction=-1.0, slack={3: 0.2}),
    "max_half_select_v": edge(
        scheme=ProportionalScheme(kind="proportional", max_pulses=16, bias="v2"),
        limits=SafetyLimits(max_width_s=1e-6, max_half_select_v=0.5),
    ),
    "max_pulses_per_device_per_run": edge(
        used=1.0, limits=SafetyLimits(max_width_s=1e-6, max_pulses_per_device_per_run=20)
    ),
    "max_energy_per_update_j": edge(slack={4: 0.01}),
}


def test_no_plan_ever_exceeds_a_limit() -> None:
    """Every plan a scheme returns is within every limit, checked here from the plan
    itself; a refusal says what it exceeds. Enough examples must produce a plan with
    RESET pulses (where compliance and energy bind by |V|) and enough must be refused;
    every limit refuses at least its fixed example."""
    reach = Reach("test_no_plan_ever_exceeds_a_limit")

    @settings(max_examples=examples(200))
    @given(case=scheme_cases())
    @example(case=EDGES["max_set_v"])
    @example(case=EDGES["max_reset_v"])
    @example(case=EDGES["max_width_s"])
    @example(case=EDGES["compliance_a at RESET polarity"])
    @example(case=EDGES["max_half_select_v"])
    @example(case=EDGES["max_pulses_per_device_per_run"])
    @example(case=EDGES["max_energy_per_update_j"])
    def check(case: dict[str, Any]) -> None:
        reach.example()
        shape, limits, slack = case["shape"], case["limits"], case["slack"]
        rng = np.random.default_rng(case["seed"])
        response = NeuroSimResponse(
            g_min_s=1e-6,
            g_max_s=5e-5,
            states_ltp=case["states"],
            states_ltd=case["states"],
            nl_ltp=case["nl"][0],
            nl_ltd=case["nl"][1],
        )
        pulses = _pair(
            slack[0] * limits.max_set_v,
            slack[1] * limits.max_reset_v,
            slack[2] * limits.max_width_s,
        )
        v_top = max(pulses.set.amplitude_v, -pulses.reset.amplitude_v)
        one_pulse = v_top**2 * pulses.set.width_s * response.g_max_s * shape[0] * shape[1]
        limits = limits.model_copy(
            update={
                "compliance_a": slack[3] * v_top * response.g_max_s,
                "max_energy_per_update_j": slack[4] * one_pulse,
            }
        )
        span = response.g_max_s - response.g_min_s
        g = response.g_min_s + span * rng.random(shape)
        delta = case["scale"] * span * rng.standard_normal(shape)
        if case["direction"]:
            delta = case["direction"] * np.abs(delta)
        budget = int(limits.max_pulses_per_device_per_run * case["used"])
        run_counts = rng.integers(0, budget + 1, size=shape)
        try:
            update = plan_update_detailed(
                case["scheme"], delta, g, response, pulses, limits, rng=rng, run_counts=run_counts
            )
        except LimitViolation as exc:
            reach.hit("refused")
            assert "exceeds" in str(exc) or "over" in str(exc)
            for limit in REFUSALS:
                if f"{limit}=" in str(exc):
                    reach.hit(f"refused by {limit}")
            if "compliance_a=" in str(exc) and " at -" in str(exc):
                reach.hit("refused by compliance_a at RESET polarity")
            return
        if not update.plan.is_empty:
            reach.hit("planned")
        if any(grp.total and grp.shape.amplitude_v < 0 for grp in update.plan.groups):
            reach.hit("planned with RESET pulses")
        _assert_within(update.plan, limits, _peak(update.plan, g, response), run_counts)
        assert update.plan.bias == case["scheme"].bias

    check()
    reach.require("planned", 0.1)
    reach.require("planned with RESET pulses", 0.05)
    reach.require("refused", 0.2)
    for limit in EDGES:  # each check refused at least its fixed example
        reach.require(f"refused by {limit}", 1 / reach.examples)


def test_write_verify_plans_never_exceed_a_limit() -> None:
    reach = Reach("test_write_verify_plans_never_exceed_a_limit")

    @settings(max_examples=examples(40))
    @given(
        seed=st.integers(0, 2**31 - 1),
        limits=limit_sets,
        v_step=st.floats(0.0, 0.5),
        steps=st.integers(0, 8),
        slack=st.tuples(_log_floats(0.3, 30.0), _log_floats(1.0, 1000.0)),
    )
    def check(
        seed: int, limits: SafetyLimits, v_step: float, steps: int, slack: tuple[float, float]
    ) -> None:
        reach.example()
        rng = np.random.default_rng(seed)
        # at most the per-update budget per iteration (a larger cap is refused on every
        # plan that uses it, which left nearly no example planning)
        per_iteration = min(8, limits.max_pulses_per_device_per_update)
        scheme = WriteVerifyScheme(
            kind="write_verify",
            v_step_v=v_step,
            max_ispp_steps=steps,
            max_iterations=6,
            max_pulses_per_iteration=per_iteration,
        )
        pulses = _pair(0.8 * limits.max_set_v, 0.8 * limits.max_reset_v, 0.5 * limits.max_width_s)
        response = LINEAR
        # compliance and energy drawn around what the pulses draw at the top of the window
        # (drawn on their own, most examples were refused on energy)
        v_top = max(limits.max_set_v, limits.max_reset_v)
        one_pulse = v_top**2 * pulses.set.width_s * response.g_max_s * 9
        limits = limits.model_copy(
            update={
                "compliance_a": slack[0] * v_top * response.g_max_s,
                "max_energy_per_update_j": slack[1] * one_pulse,
            }
        )
        span = response.g_max_s - response.g_min_s
        targets = response.g_min_s + span * rng.random((3, 3))
        planner = WriteVerifyPlanner(scheme, pulses, limits, response, targets)
        planned = False
        for _ in range(6):
            g = response.g_min_s + span * rng.random((3, 3))
            try:
                plan = planner.next_plan(g)
            except LimitViolation:
                reach.hit("refused")
                return
            if plan is None:
                break
            planned = True
            _assert_within(plan, limits, _peak(plan, g, response), None)
        reach.hit("planned" if planned else "nothing to plan")

    check()
    reach.require("planned", 0.2)


def test_stochastic_rounding_is_unbiased_on_a_linear_device() -> None:
    """Realised changes on the simulator's linear device average to the request."""
    reach = Reach("test_stochastic_rounding_is_unbiased_on_a_linear_device")

    @settings(max_examples=examples(8))
    @given(requests=st.lists(st.floats(-6.0, 6.0), min_size=4, max_size=4))
    def check(requests: list[float]) -> None:
        reach.example()
        req = np.array([requests]) * STEP
        scheme = ProportionalScheme(kind="proportional", max_pulses=16)
        rng = np.random.default_rng(1)
        trials = 160
        with SimulatedCrossbar(1, 4, preset="ideal", seed=3, limits=ROOMY, initial="mid") as array:
            realised = np.zeros((2, 4))
            for t in range(trials):
                sign = 1.0 if t % 2 == 0 else -1.0
                g = array.read()
                array.apply(plan_update(scheme, sign * req, g, LINEAR, NOMINAL, ROOMY, rng=rng))
                realised[t % 2] += sign * (array.read() - g)[0]
        mean = realised / (trials / 2)
        if np.any(np.abs(req - np.round(req / STEP) * STEP) > 0.05 * STEP):
            reach.hit("fractional request")  # where rounding has something to decide
        # Per-trial spread is at most half a step; 4 standard errors of the mean.
        tol = 4 * 0.5 * STEP / np.sqrt(trials / 2) + 1e-3 * STEP
        assert np.all(np.abs(mean - req[0]) <= tol), (mean / STEP, req / STEP)

    check()
    reach.require("fractional request", 0.5)


def test_nearest_rounding_loses_small_updates_that_stochastic_rounding_keeps() -> None:
    g = np.full((1, 50), 50e-6)
    dg = np.full((1, 50), 0.3 * STEP)
    nearest = ProportionalScheme(kind="proportional", rounding="nearest")
    assert plan_update(nearest, dg, g, LINEAR, NOMINAL, ROOMY).is_empty
    stochastic = ProportionalScheme(kind="proportional")
    rng = np.random.default_rng(0)
    total = sum(
        plan_update(stochastic, dg, g, LINEAR, NOMINAL, ROOMY, rng=rng).total_pulses
        for _ in range(40)
    )
    assert abs(total / (40 * 50) - 0.3) < 0.05


def test_inverse_counting_removes_the_mean_nonlinearity() -> None:
    curved = NeuroSimResponse(
        g_min_s=1e-6, g_max_s=100e-6, states_ltp=100, states_ltd=100, nl_ltp=4.0, nl_ltd=-4.0
    )
    g = np.full((1, 400), 40e-6)
    dg = np.full((1, 400), 25.0e-6)
    rng = np.random.default_rng(5)
    limits = SafetyLimits(max_energy_per_update_j=1.0, compliance_a=0.1)
    step = ProportionalScheme(kind="proportional", count="step", max_pulses=64)
    inverse = ProportionalScheme(kind="proportional", count="inverse", max_pulses=64)
    by_step = plan_update_detailed(step, dg, g, curved, NOMINAL, limits, rng=rng)
    by_inverse = plan_update_detailed(inverse, dg, g, curved, NOMINAL, limits, rng=rng)
    # On a saturating curve the step at the present G overestimates later steps.
    assert by_step.expected_delta_g.mean() < 0.85 * 25.0e-6
    assert abs(by_inverse.expected_delta_g.mean() - 25.0e-6) < 0.03 * 25.0e-6


def test_proportional_caps_and_marks_clipped_devices() -> None:
    g = np.full((2, 2), 50e-6)
    dg = np.array([[100 * STEP, -3 * STEP], [0.0, -100 * STEP]])
    scheme = ProportionalScheme(kind="proportional", rounding="nearest", max_pulses=10)
    update = plan_update_detailed(scheme, dg, g, LINEAR, NOMINAL, ROOMY)
    assert update.plan.signed_counts().tolist() == [[10, -3], [0, -10]]
    assert update.clipped.tolist() == [[True, False], [False, True]]
    set_group, reset_group = update.plan.groups
    assert set_group.shape.amplitude_v > 0 > reset_group.shape.amplitude_v


def test_one_pass_step_and_expectation_match_the_per_polarity_curves() -> None:
    """The planner's single-pass step, expectation and peak equal the curves evaluated apart."""
    curved = NeuroSimResponse(
        g_min_s=1e-6, g_max_s=100e-6, states_ltp=64, states_ltd=48, nl_ltp=2.0, nl_ltd=-3.0
    )
    rng = np.random.default_rng(5)
    g = rng.uniform(curved.g_min_s, curved.g_max_s, (6, 7))
    dg = rng.normal(0.0, 4e-6, (6, 7))
    dg[0, :3] = 0.0
    # step: each device on its own polarity's curve, as two whole-array evaluations give it
    step = signed_step(curved, g, dg)
    apart = np.where(dg >= 0, curved.step(g, +1), curved.step(g, -1))
    np.testing.assert_array_equal(step, apart)
    # and as the NeuroSim formulas give it directly
    span = curved.g_max_s - curved.g_min_s
    x = (g - curved.g_min_s) / span
    p_up = np.minimum(curve_inverse(x, curved.a_ltp) + 1 / 64, 1.0)
    q_dn = np.minimum(curve_inverse(1 - x, curved.a_ltd) + 1 / 48, 1.0)
    up = curved.g_min_s + span * curve(p_up, curved.a_ltp) - g
    down = g - (curved.g_max_s - span * curve(q_dn, curved.a_ltd))
    np.testing.assert_allclose(step, np.where(dg >= 0, up, down), rtol=1e-9)
    # expectation and peak in one pass: the same as the plan applied group by group
    scheme = ProportionalScheme(kind="proportional", max_pulses=20)
    update = plan_update_detailed(scheme, dg, g, curved, NOMINAL, ROOMY, rng=rng)
    assert len(update.plan.groups) == 2
    np.testing.assert_array_equal(
        update.expected_delta_g, expected_after(update.plan, g, curved) - g
    )
    peak = _peak(update.plan, g, curved)
    assert np.all(peak >= g) and np.any(peak > g)
    scalar = curved.after_pulses(50e-6, 3)
    assert scalar.shape == () and curved.g_min_s < float(scalar) < curved.g_max_s


def test_plan_update_is_plan_update_detailed_without_the_details() -> None:
    g = np.full((2, 3), 40e-6)
    dg = np.array([[5 * STEP, -2.4 * STEP, 0.0], [0.3 * STEP, -9 * STEP, 1.5 * STEP]])
    scheme = ProportionalScheme(kind="proportional")
    plan = plan_update(scheme, dg, g, LINEAR, NOMINAL, ROOMY, rng=np.random.default_rng(1))
    detailed = plan_update_detailed(
        scheme, dg, g, LINEAR, NOMINAL, ROOMY, rng=np.random.default_rng(1)
    )
    assert plan.digest() == detailed.plan.digest()
    assert plan_update.__name__ == "plan_update"
    assert list(inspect.signature(plan_update).parameters) == list(
        inspect.signature(plan_update_detailed).parameters
    )


def test_manhattan_sends_one_pulse_of_the_right_sign_above_threshold() -> None:
    g = np.full((1, 5), 50e-6)
    dg = np.array([[3 * STEP, -0.2 * STEP, 0.0, -5 * STEP, 0.6 * STEP]])
    scheme = ManhattanScheme(kind="manhattan", threshold_steps=0.5)
    plan = plan_update(scheme, dg, g, LINEAR, NOMINAL, ROOMY)
    assert plan.signed_counts().tolist() == [[1, 0, 0, -1, 1]]
    assert plan.counts_per_device().max() == 1


def _single_phase(counts: np.ndarray) -> bool:
    """Counts are 2^k times one row set x one column set (one parallel phase, repeated)."""
    top = counts.max()
    if top == 0 or top & (top - 1):
        return False
    unit = counts // top
    rows, cols = unit.any(axis=1), unit.any(axis=0)
    return bool(np.array_equal(unit, np.outer(rows, cols).astype(unit.dtype)))


@pytest.mark.parametrize("n", [4, 24])
def test_outer_product_groups_are_parallel_phases_independent_of_size(n: int) -> None:
    rng = np.random.default_rng(n)
    y, v = rng.standard_normal(n), rng.standard_normal(n)
    g = np.full((n, n), 50e-6)
    dg = 0.4 * STEP * (np.outer(y, v) + np.outer(v, y))
    scheme = OuterProductScheme(kind="outer_product", rank=2, bias="v3", max_pulses=32)
    update = plan_update_detailed(scheme, dg, g, LINEAR, NOMINAL, ROOMY, rng=rng)
    plan = update.plan
    assert plan.bias == "v3"
    assert update.approximation_error < 1e-6
    assert all(group.parallel and _single_phase(group.counts) for group in plan.groups)
    # 2 terms x 4 sign quadrants x bits^2 groups at most, whatever the array size.
    bits = int(np.sqrt(32 // 2)).bit_length()
    assert len(plan.groups) <= 2 * 4 * bits * bits
    assert plan.counts_per_device().max() <= 32


def test_outer_product_is_unbiased_for_rank_one_requests() -> None:
    rng = np.random.default_rng(11)
    y, v = rng.standard_normal(6), rng.standard_normal(5)
    dg = 0.5 * STEP * np.outer(y, v)
    g = np.full(dg.shape, 50e-6)
    scheme = OuterProductScheme(kind="outer_product", max_pulses=16)
    trials = 2400
    mean = (
        sum(
            plan_update_detailed(scheme, dg, g, LINEAR, NOMINAL, ROOMY, rng=rng).expected_delta_g
            for _ in range(trials)
        )
        / trials
    )
    # `python bench/outer_product_bias.py` (this setting, 2400 trials, seeds 0-8 and 11):
    # worst device 0.012-0.035 steps from the request (0.021 with seed 11), least-squares gain
    # 0.983-1.010 (1.010). The requests reach 1.3 steps, so a rounding biased by a few per
    # cent of a step, or a gain a few per cent off, crosses these bounds.
    assert np.max(np.abs(mean - dg)) <= 0.05 * STEP, np.max(np.abs(mean - dg)) / STEP
    gain = float(np.sum(mean * dg) / np.sum(dg * dg))
    assert abs(gain - 1.0) <= 0.03, gain


def test_a_violation_raises_and_names_the_device() -> None:
    g = np.full((2, 3), 50e-6)
    dg = np.zeros((2, 3))
    dg[1, 2] = 5 * STEP
    tight = SafetyLimits(max_set_v=1.0, max_energy_per_update_j=1.0, compliance_a=0.1)
    scheme = ProportionalScheme(kind="proportional", rounding="nearest")
    with pytest.raises(LimitViolation, match=r"row=1, col=2.*max_set_v=1 V"):
        plan_update(scheme, dg, g, LINEAR, NOMINAL, tight)
    used = np.zeros((2, 3), dtype=np.int64)
    used[1, 2] = 399
    budget = SafetyLimits(
        max_pulses_per_device_per_run=400, max_energy_per_update_j=1.0, compliance_a=0.1
    )
    with pytest.raises(LimitViolation, match=r"row=1, col=2.*would reach 404"):
        plan_update(scheme, dg, g, LINEAR, NOMINAL, budget, run_counts=used)


def test_bad_requests_are_input_errors() -> None:
    scheme = ProportionalScheme(kind="proportional")
    g = np.full((2, 2), 50e-6)
    bad = np.zeros((2, 2))
    bad[0, 1] = np.nan
    with pytest.raises(InputError, match=r"delta_g at device \(row=0, col=1\)"):
        plan_update(scheme, bad, g, LINEAR, NOMINAL, ROOMY, rng=np.random.default_rng(0))
    with pytest.raises(InputError, match="shape"):
        plan_update(scheme, np.zeros((2, 3)), g, LINEAR, NOMINAL, ROOMY)
    wv = WriteVerifyScheme(kind="write_verify")
    with pytest.raises(InputError, match="closed-loop"):
        plan_update(wv, np.zeros((2, 2)), g, LINEAR, NOMINAL, ROOMY)


def test_ispp_climbs_while_the_device_resists_and_restarts_after_overshoot() -> None:
    scheme = WriteVerifyScheme(
        kind="write_verify", v_step_v=0.1, max_ispp_steps=3, pulses_per_iteration="single"
    )
    limits = SafetyLimits(max_set_v=2.25, max_reset_v=3.0, max_energy_per_update_j=1.0)
    target = np.full((1, 1), 60e-6)
    planner = WriteVerifyPlanner(scheme, NOMINAL, limits, LINEAR, target)
    stuck = np.full((1, 1), 20e-6)
    amps = []
    for _ in range(5):
        plan = planner.next_plan(stuck)
        assert plan is not None
        amps.append(plan.groups[0].shape.amplitude_v)
    # 2.0, 2.1, 2.2, then capped by max_set_v = 2.25 (not by max_ispp_steps = 3).
    assert amps == pytest.approx([2.0, 2.1, 2.2, 2.2, 2.2])
    over = planner.next_plan(np.full((1, 1), 80e-6))
    assert over is not None
    assert over.groups[0].shape.amplitude_v == pytest.approx(-2.0)
    assert planner.next_plan(np.full((1, 1), 60.5e-6)) is None
    assert planner.status == "converged"


def test_write_verify_refuses_a_target_outside_the_response_window() -> None:
    tol = 0.02 * (LINEAR.g_max_s - LINEAR.g_min_s)
    scheme = WriteVerifyScheme(kind="write_verify", tolerance_frac=0.02)
    targets = np.full((2, 2), 0.5 * (LINEAR.g_min_s + LINEAR.g_max_s))
    targets[0, 0] = LINEAR.g_max_s + 0.9 * tol  # reachable within tolerance
    WriteVerifyPlanner(scheme, NOMINAL, ROOMY, LINEAR, targets)
    targets[1, 0] = LINEAR.g_max_s + 1.5 * tol
    with pytest.raises(InputError, match=r"device \(row=1, col=0\).*outside the response"):
        WriteVerifyPlanner(scheme, NOMINAL, ROOMY, LINEAR, targets)
    mask = np.ones((2, 2), dtype=bool)
    mask[1, 0] = False  # a device left alone may hold any target
    WriteVerifyPlanner(scheme, NOMINAL, ROOMY, LINEAR, targets, mask=mask)
    with SimulatedCrossbar(2, 2, preset="ideal", seed=0, limits=ROOMY) as array:
        with pytest.raises(InputError, match="outside the response"):
            program(array, targets, scheme=scheme, pulses=NOMINAL, response=LINEAR)
        assert not array.pulse_counts.any()


@pytest.mark.parametrize("preset", ["ideal", "taox_hfox", "vteam"])
def test_write_verify_programs_a_simulated_array(preset: str) -> None:
    with SimulatedCrossbar(4, 4, preset=preset, seed=2, limits=ROOMY) as array:
        cfg = array.config
        response = mean_response(cfg)
        pulses = PulsePair(
            set=Pulse(amplitude_v=cfg.set_pulse.amplitude_v, width_s=cfg.set_pulse.width_s),
            reset=Pulse(amplitude_v=cfg.reset_pulse.amplitude_v, width_s=cfg.reset_pulse.width_s),
        )
        span = response.g_max_s - response.g_min_s
        targets = response.g_min_s + span * np.random.default_rng(0).uniform(0.2, 0.8, (4, 4))
        mask = np.ones((4, 4), dtype=bool)
        mask[0, 0] = False
        before = array.read()[0, 0]
        scheme = WriteVerifyScheme(
            kind="write_verify",
            tolerance_frac=0.03,
            max_iterations=150,
            v_step_v=0.02,
            max_ispp_steps=3,
        )
        result = program(array, targets, scheme=scheme, pulses=pulses, response=response, mask=mask)
        assert result.status == "converged"
        assert result.converged[mask].all()
        assert np.all(np.abs(array.read() - targets)[mask] <= result.tolerance_s)
        assert array.read()[0, 0] == before  # unmasked device untouched
        assert result.pulses[0, 0] == 0
