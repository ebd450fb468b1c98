"""Pulse plans and safety limits: validation and the violation messages researchers see."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from protocols import LimitViolation, PulseGroup, PulsePlan, PulseShape, SafetyLimits, check_plan

SET = PulseShape(amplitude_v=1.5, width_s=1e-6)
RESET = PulseShape(amplitude_v=-1.2, width_s=1e-6)


def plan_of(*groups: tuple[PulseShape, np.ndarray]) -> PulsePlan:
    counts = [c for _, c in groups]
    return PulsePlan.from_groups(counts[0].shape, [PulseGroup(s, c) for s, c in groups])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"amplitude_v": 0.0, "width_s": 1e-6}, "non-zero amplitude"),
        ({"amplitude_v": float("nan"), "width_s": 1e-6}, "finite"),
        ({"amplitude_v": 1.0, "width_s": 0.0}, "greater than 0"),
        ({"amplitude_v": 1.0, "width_s": -1e-6}, "greater than 0"),
        ({"amplitude_v": 1.0, "width_s": float("inf")}, "finite"),
        ({"amplitude_v": "1.0", "width_s": 1e-6}, "valid number"),
    ],
)
def test_pulse_shape_rejects_bad_values(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        PulseShape(**kwargs)  # type: ignore[arg-type]


def test_group_rejects_negative_and_fractional_counts() -> None:
    counts = np.zeros((2, 3), dtype=np.int64)
    counts[1, 2] = -1
    with pytest.raises(ValueError, match=r"row=1, col=2"):
        PulseGroup(SET, counts)
    with pytest.raises(ValueError, match="integers"):
        PulseGroup(SET, np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="2-D"):
        PulseGroup(SET, np.zeros(3, dtype=np.int64))


def test_plan_rejects_mismatched_group_shape() -> None:
    with pytest.raises(ValueError, match=r"group 1 counts have shape \(3, 3\)"):
        PulsePlan(
            2, 3, (PulseGroup(SET, np.zeros((2, 3), int)), PulseGroup(SET, np.zeros((3, 3), int)))
        )


def test_plan_totals_signed_counts_and_energy() -> None:
    up = np.array([[1, 0], [2, 0]])
    down = np.array([[0, 3], [1, 0]])
    plan = plan_of((SET, up), (RESET, down))
    assert plan.total_pulses == 7
    np.testing.assert_array_equal(plan.counts_per_device(), up + down)
    np.testing.assert_array_equal(plan.signed_counts(), up - down)
    g = np.full((2, 2), 1e-5)
    expected = (1.5**2 * 3 + 1.2**2 * 4) * 1e-6 * 1e-5
    assert plan.energy_estimate_j(g) == pytest.approx(expected)


def test_digest_changes_with_any_field() -> None:
    counts = np.eye(2, dtype=np.int64)
    base = plan_of((SET, counts))
    assert base.digest() == plan_of((SET, counts.copy())).digest()
    assert base.digest() != plan_of((RESET, counts)).digest()
    assert base.digest() != plan_of((SET, 2 * counts)).digest()
    v2 = PulsePlan.from_groups((2, 2), [PulseGroup(SET, counts)], bias="v2")
    assert base.digest() != v2.digest()


def test_counts_are_read_only() -> None:
    group = PulseGroup(SET, np.ones((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="read-only"):
        group.counts[0, 0] = 5


@pytest.mark.parametrize(
    ("shape", "limits", "fragment"),
    [
        (PulseShape(amplitude_v=3.5, width_s=1e-6), SafetyLimits(max_set_v=3.0), "max_set_v=3 V"),
        (PulseShape(amplitude_v=-2.5, width_s=1e-6), SafetyLimits(max_reset_v=2.0), "max_reset_v"),
        (PulseShape(amplitude_v=1.0, width_s=2e-3), SafetyLimits(max_width_s=1e-3), "max_width_s"),
    ],
)
def test_shape_limits_name_device_value_and_limit(
    shape: PulseShape, limits: SafetyLimits, fragment: str
) -> None:
    counts = np.zeros((3, 4), dtype=np.int64)
    counts[2, 1] = 1
    with pytest.raises(LimitViolation, match=fragment) as info:
        check_plan(plan_of((shape, counts)), limits)
    assert "row=2, col=1" in str(info.value)


def test_unused_group_over_limit_is_not_a_violation() -> None:
    """A shape that is never pulsed sends nothing, so it cannot be unsafe."""
    plan = plan_of((PulseShape(amplitude_v=9.0, width_s=1e-6), np.zeros((2, 2), dtype=np.int64)))
    check_plan(plan, SafetyLimits(max_set_v=1.0))


def test_pulse_budgets_per_update_and_per_run() -> None:
    counts = np.zeros((2, 2), dtype=np.int64)
    counts[0, 1] = 5
    plan = plan_of((SET, counts))
    check_plan(plan, SafetyLimits(max_pulses_per_device_per_update=5))
    with pytest.raises(LimitViolation, match=r"row=0, col=1\) would receive 5 pulses"):
        check_plan(plan, SafetyLimits(max_pulses_per_device_per_update=4))
    run = np.full((2, 2), 96, dtype=np.int64)
    with pytest.raises(LimitViolation, match="would reach 101 pulses"):
        check_plan(plan, SafetyLimits(max_pulses_per_device_per_run=100), run_counts=run)


def test_compliance_and_energy_need_conductance() -> None:
    counts = np.ones((2, 2), dtype=np.int64)
    plan = plan_of((SET, counts))
    g = np.full((2, 2), 1e-5)
    g[1, 0] = 1e-3  # 1.5 mA at 1.5 V
    limits = SafetyLimits(compliance_a=1e-3)
    check_plan(plan, limits)  # without conductances the check cannot be made
    with pytest.raises(LimitViolation, match=r"row=1, col=0\) would draw 0.0015 A"):
        check_plan(plan, limits, conductance_s=g)
    with pytest.raises(LimitViolation, match="max_energy_per_update_j"):
        check_plan(
            plan, SafetyLimits(max_energy_per_update_j=1e-12), conductance_s=np.full((2, 2), 1e-5)
        )
    g[1, 0] = np.nan  # a NaN conductance must not make the compliance check vacuous
    with pytest.raises(LimitViolation, match=r"device \(row=1, col=0\) is nan"):
        check_plan(plan, limits, conductance_s=g)
    with pytest.raises(ValueError, match="shape"):
        check_plan(plan, limits, conductance_s=np.full((2, 3), 1e-5))


def test_limits_reject_unknown_keys_and_non_finite() -> None:
    with pytest.raises(ValidationError, match="extra"):
        SafetyLimits(max_volts=2.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="finite"):
        SafetyLimits(max_set_v=float("inf"))
