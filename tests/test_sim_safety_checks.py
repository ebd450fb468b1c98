"""The allocation-free pulse-count checks still find and name every violation."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.limits import LimitViolation, SafetyLimits, check_plan
from protocols.plan import PulseGroup, PulsePlan, PulseShape

SET = PulseShape(amplitude_v=2.0, width_s=1e-7)
RESET = PulseShape(amplitude_v=-2.0, width_s=1e-7)


def two_groups(a: np.ndarray, b: np.ndarray) -> PulsePlan:
    return PulsePlan.from_groups(a.shape, [PulseGroup(SET, a), PulseGroup(RESET, b)])


def test_group_total_and_max_are_cached_and_correct() -> None:
    counts = np.zeros((30, 40), dtype=np.int64)
    counts[7, 9] = 5
    counts[3, 1] = 2
    group = PulseGroup(SET, counts)
    assert group.total == 7 and group.max_count == 5
    assert group.total == 7 and group.max_count == 5  # cached values agree
    assert PulseGroup(SET, np.zeros((2, 2), dtype=np.int64)).max_count == 0


def test_bound_over_the_limit_without_a_violating_device_passes() -> None:
    limits = SafetyLimits(max_pulses_per_device_per_update=10)
    a = np.zeros((20, 20), dtype=np.int64)
    b = np.zeros((20, 20), dtype=np.int64)
    a[2, 3] = 6
    b[5, 5] = 6  # 6 + 6 > 10 as a bound, but on different devices
    check_plan(two_groups(a, b), limits)


def test_per_update_violation_on_a_later_device_is_named() -> None:
    limits = SafetyLimits(max_pulses_per_device_per_update=10)
    a = np.ones((20, 20), dtype=np.int64)
    b = np.zeros((20, 20), dtype=np.int64)
    b[13, 17] = 10  # 1 + 10 on device (13, 17) only
    with pytest.raises(LimitViolation, match=r"device \(row=13, col=17\) would receive 11 pulses"):
        check_plan(two_groups(a, b), limits)


def test_per_run_budget_is_checked_against_previous_pulses() -> None:
    limits = SafetyLimits(max_pulses_per_device_per_run=100)
    a = np.full((8, 8), 3, dtype=np.int64)
    b = np.zeros((8, 8), dtype=np.int64)
    run = np.full((8, 8), 90, dtype=np.int64)
    check_plan(two_groups(a, b), limits, run_counts=run)  # 93 <= 100
    run[6, 2] = 98
    with pytest.raises(LimitViolation, match=r"device \(row=6, col=2\) would reach 101 pulses"):
        check_plan(two_groups(a, b), limits, run_counts=run)


def test_amplitude_violation_names_the_first_pulsed_device() -> None:
    counts = np.zeros((50, 60), dtype=np.int64)
    counts[31, 44] = 1
    counts[40, 2] = 1
    plan = PulsePlan.from_groups(
        counts.shape, [PulseGroup(PulseShape(amplitude_v=5.0, width_s=1e-7), counts)]
    )
    with pytest.raises(LimitViolation, match=r"device \(row=31, col=44\) exceeds max_set_v"):
        check_plan(plan, SafetyLimits())
