"""Three limits, each checked by a fixed example rather than left to a drawn one: RESET-
polarity compliance, the per-run pulse budget and the half-select limit. Each refusal
names the device (row, col), the offending value and the limit; each limit lets through
what sits exactly on it; and through a backend, the refused plan reaches no device."""

from __future__ import annotations

import re

import numpy as np
import pytest

from protocols.limits import LimitViolation, SafetyLimits, check_plan
from protocols.plan import BiasScheme, PulseGroup, PulsePlan, PulseShape
from protocols.response import NeuroSimResponse
from protocols.schemes import plan_update
from protocols.spec import ProportionalScheme, Pulse, PulsePair
from sim_backend import SimulatedCrossbar

SHAPE = (3, 4)
SET = PulseShape(amplitude_v=2.0, width_s=1e-8)
RESET = PulseShape(amplitude_v=-2.0, width_s=1e-8)


def one(shape: PulseShape, r: int, c: int, n: int = 1, bias: BiasScheme = "none") -> PulsePlan:
    counts = np.zeros(SHAPE, dtype=np.int64)
    counts[r, c] = n
    return PulsePlan.from_groups(SHAPE, [PulseGroup(shape, counts)], bias=bias)


def named(device: tuple[int, int], *parts: str) -> str:
    """A pattern for a message naming `device` and each of `parts` (in any order)."""
    wanted = [f"device (row={device[0]}, col={device[1]})", *parts]
    return "".join(f"(?=.*{re.escape(p)})" for p in wanted)


# -- compliance at RESET polarity ----------------------------------------------------------
COMPLIANCE = SafetyLimits(compliance_a=1e-3, max_energy_per_update_j=1.0)


def conductances(device: tuple[int, int], g: float) -> np.ndarray:
    out = np.full(SHAPE, 1e-5)
    out[device] = g
    return out


def test_a_reset_pulse_over_the_compliance_is_refused_naming_device_current_and_limit() -> None:
    """-2 V across 0.75 mS draws 1.5 mA in the RESET direction: over 1 mA, whatever the sign."""
    g = conductances((1, 2), 7.5e-4)
    wanted = named((1, 2), "0.0015 A", "-2 V", "compliance_a=0.001 A")
    with pytest.raises(LimitViolation, match=wanted) as exc:
        check_plan(one(RESET, 1, 2), COMPLIANCE, conductance_s=g)
    assert "would draw 0.0015 A at -2 V" in str(exc.value)
    # the same current in the SET direction is refused the same way
    with pytest.raises(LimitViolation, match=named((1, 2), "2 V", "compliance_a=0.001 A")):
        check_plan(one(SET, 1, 2), COMPLIANCE, conductance_s=g)


def test_a_reset_pulse_exactly_at_the_compliance_passes() -> None:
    check_plan(one(RESET, 1, 2), COMPLIANCE, conductance_s=conductances((1, 2), 5e-4))


def test_a_scheme_refuses_a_reset_that_would_break_the_compliance() -> None:
    """The programming schemes hold RESET plans to the compliance too (at the highest
    conductance the plan reaches, which for a RESET is where it starts)."""
    response = NeuroSimResponse(
        g_min_s=1e-6, g_max_s=1e-3, states_ltp=100, states_ltd=100, nl_ltp=0.0, nl_ltd=0.0
    )
    pulses = PulsePair(
        set=Pulse(amplitude_v=2.0, width_s=1e-8), reset=Pulse(amplitude_v=-2.0, width_s=1e-8)
    )
    g = np.full(SHAPE, 1e-5)
    g[2, 1] = 9e-4  # 1.8 mA at 2 V
    delta = np.zeros(SHAPE)
    delta[2, 1] = -5e-5
    scheme = ProportionalScheme(kind="proportional", rounding="nearest")
    wanted = named((2, 1), "0.0018 A", "-2 V", "compliance_a=0.001 A")
    with pytest.raises(LimitViolation, match=wanted):
        plan_update(scheme, delta, g, response, pulses, COMPLIANCE)


# -- the per-run pulse budget ---------------------------------------------------------------
BUDGET = SafetyLimits(max_pulses_per_device_per_run=100)


def test_a_plan_past_the_run_budget_is_refused_naming_device_count_and_limit() -> None:
    used = np.zeros(SHAPE, dtype=np.int64)
    used[2, 0] = 98
    with pytest.raises(
        LimitViolation, match=named((2, 0), "101 pulses", "max_pulses_per_device_per_run=100")
    ):
        check_plan(one(SET, 2, 0, 3), BUDGET, run_counts=used)
    check_plan(one(SET, 2, 0, 2), BUDGET, run_counts=used)  # exactly 100: allowed


def test_a_backend_counts_the_run_budget_across_plans_and_sends_nothing_past_it() -> None:
    limits = SafetyLimits(max_pulses_per_device_per_run=10)
    with SimulatedCrossbar(*SHAPE, preset="ideal", seed=0, limits=limits) as xbar:
        xbar.apply(one(SET, 1, 1, 6))
        g = xbar.conductances()
        with pytest.raises(
            LimitViolation, match=named((1, 1), "12 pulses", "max_pulses_per_device_per_run=10")
        ):
            xbar.apply(one(RESET, 1, 1, 6))
        np.testing.assert_array_equal(xbar.conductances(), g)
        xbar.apply(one(RESET, 1, 1, 4))  # 10 in all: the budget, not past it
        assert xbar.pulse_counts[1, 1] == 10


# -- the half-select limit ------------------------------------------------------------------
HALF = SafetyLimits(max_half_select_v=1.0)


@pytest.mark.parametrize("shape", [SET, RESET], ids=["set", "reset"])
def test_v2_biasing_over_the_half_select_limit_is_refused_naming_device_volts_and_limit(
    shape: PulseShape,
) -> None:
    strong = shape.model_copy(update={"amplitude_v": 1.2 * shape.amplitude_v})  # 2.4 V
    with pytest.raises(LimitViolation, match=named((0, 3), "max_half_select_v=1 V")) as exc:
        check_plan(one(strong, 0, 3, bias="v2"), HALF)
    assert "puts 1.2 V on devices sharing a line" in str(exc.value)
    check_plan(one(strong, 0, 3, bias="v3"), HALF)  # 0.8 V under V/3
    check_plan(one(shape, 0, 3, bias="v2"), HALF)  # exactly 1 V


def test_a_backend_sends_nothing_over_the_half_select_limit() -> None:
    with SimulatedCrossbar(*SHAPE, preset="ideal", seed=0, limits=HALF) as xbar:
        g = xbar.conductances()
        high = PulseShape(amplitude_v=2.4, width_s=1e-8)
        with pytest.raises(LimitViolation, match=named((2, 2), "1.2 V", "max_half_select_v=1 V")):
            xbar.apply(one(high, 2, 2, bias="v2"))
        np.testing.assert_array_equal(xbar.conductances(), g)
        assert int(xbar.pulse_counts.sum()) == 0
