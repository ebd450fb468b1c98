"""The conformance suite catches broken backends (it is not a rubber stamp).

Each broken variant below keeps the base class's bookkeeping (`pulse_counts`) right, or at
least unchanged, so only a suite that asks the device side (the witness) can tell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conformance import BackendConformance, sim_witness

from protocols.limits import LimitViolation, check_plan
from protocols.plan import PulseGroup, PulsePlan
from sim_backend import SimulatedCrossbar


class LimitsAfterSending(SimulatedCrossbar):
    """Sends the plan, then checks it: an unsafe plan raises, the bookkeeping stays
    unchanged, and the devices have taken the pulses."""

    def apply(self, plan: PulsePlan) -> None:
        self._check_open()
        if plan.is_empty:
            return
        self._apply(plan)
        check_plan(plan, self.limits, run_counts=self._pulse_counts)
        for group in plan.groups:
            self._pulse_counts += group.counts


class ChecksAsItSends(SimulatedCrossbar):
    """Checks each group just before sending it: the safe groups before an unsafe one
    have gone out when the refusal comes (and are counted, as they were sent)."""

    def apply(self, plan: PulsePlan) -> None:
        self._check_open()
        for group in plan.groups:
            one = PulsePlan.from_groups(plan.shape, [group], bias=plan.bias)
            check_plan(one, self.limits, run_counts=self._pulse_counts)
            if group.total:
                self._apply(one)
                self._pulse_counts += group.counts


class OneShapeForAll(SimulatedCrossbar):
    """Fires every group of a plan with the first group's pulse (a board that keeps the
    shape it was first given); the bookkeeping counts every pulse."""

    def _apply(self, plan: PulsePlan) -> None:
        first = plan.groups[0].shape
        same = [PulseGroup(first, g.counts, g.parallel) for g in plan.groups]
        super()._apply(PulsePlan.from_groups(plan.shape, same, bias=plan.bias))


class SendsTwice(SimulatedCrossbar):
    """Sends each plan twice (a retry that does not ask whether the first went through):
    every device moves the right way, by twice what it should."""

    def _apply(self, plan: PulsePlan) -> None:
        super()._apply(plan)
        super()._apply(plan)


class FirstGroupOnly(SimulatedCrossbar):
    """Delivers the first non-empty group of a plan and drops the rest."""

    def _apply(self, plan: PulsePlan) -> None:
        first = next(g for g in plan.groups if g.total)
        super()._apply(PulsePlan.from_groups(plan.shape, [first], bias=plan.bias))


class SwappedPolarity(SimulatedCrossbar):
    """Delivers every pulse with the opposite polarity (a wiring mistake)."""

    def _apply(self, plan: PulsePlan) -> None:
        flipped = [
            PulseGroup(g.shape.model_copy(update={"amplitude_v": -g.shape.amplitude_v}), g.counts)
            for g in plan.groups
        ]
        super()._apply(PulsePlan.from_groups(plan.shape, flipped, bias=plan.bias))


class ForgetfulSnapshot(SimulatedCrossbar):
    """Restores the devices but not the random generators."""

    def _restore(self, state: dict[str, Any]) -> None:
        rng, noise = self._rng.bit_generator.state, self._noise.state()
        super()._restore(state)
        self._rng.bit_generator.state = rng
        self._noise.set_state(noise)


class WrongTranspose(SimulatedCrossbar):
    """Ignores `transpose` (a bug only a square, non-symmetric array shows)."""

    def _mvm(self, voltages: np.ndarray, transpose: bool) -> np.ndarray:
        return voltages @ self.conductances()


SUITE = BackendConformance()


def test_swapped_polarity_fails_the_direction_test() -> None:
    with (
        SwappedPolarity(4, 4, preset="ideal", seed=0, initial="mid") as xbar,
        pytest.raises(AssertionError),
    ):
        SUITE.test_set_raises_and_reset_lowers_conductance(xbar)


def test_lost_random_state_fails_the_resume_test() -> None:
    with (
        ForgetfulSnapshot(4, 4, preset="taox_hfox", seed=0) as xbar,
        pytest.raises(AssertionError),
    ):
        SUITE.test_snapshot_restore_resumes_or_is_declared_absent(xbar)


def test_wrong_transposed_product_fails_the_mvm_test() -> None:
    with WrongTranspose(4, 4, preset="taox_hfox", seed=0, initial=0.3) as xbar:
        xbar.apply(
            PulsePlan.from_groups(
                (4, 4),
                [PulseGroup(xbar.config.set_pulse, np.arange(16, dtype=np.int64).reshape(4, 4))],
            )
        )
        with pytest.raises(AssertionError):
            SUITE.test_mvm_matches_conductances_or_is_declared_absent(xbar)


def test_the_same_tests_pass_on_the_correct_backend() -> None:
    for test in (
        SUITE.test_set_raises_and_reset_lowers_conductance,
        SUITE.test_snapshot_restore_resumes_or_is_declared_absent,
        SUITE.test_mvm_matches_conductances_or_is_declared_absent,
    ):
        with SimulatedCrossbar(4, 4, preset="taox_hfox", seed=0, initial=0.3) as xbar:
            test(xbar)


# -- the suite judges the device side -----------------------------------------------------
def test_a_backend_that_checks_its_limits_after_sending_fails_the_unsafe_plan_test() -> None:
    with LimitsAfterSending(3, 4, preset="ideal", seed=0, initial="mid") as xbar:
        # What the old suite looked at stays clean: the refusal comes, the count is unchanged.
        plan = SUITE.unsafe_plans(xbar)[0][1]
        before = xbar.pulse_counts
        with pytest.raises(LimitViolation):
            xbar.apply(plan)
        np.testing.assert_array_equal(xbar.pulse_counts, before)
        with pytest.raises(AssertionError, match="a device moved"):
            SUITE.test_unsafe_plan_reaches_no_device(xbar, sim_witness(xbar))


def test_a_backend_that_checks_group_by_group_as_it_sends_fails_the_unsafe_plan_test() -> None:
    with (
        ChecksAsItSends(3, 4, preset="ideal", seed=0, initial="mid") as xbar,
        pytest.raises(AssertionError, match="a device moved"),
    ):
        SUITE.test_unsafe_plan_reaches_no_device(xbar, sim_witness(xbar))


@pytest.mark.parametrize("broken", [OneShapeForAll, FirstGroupOnly, SwappedPolarity, SendsTwice])
def test_a_backend_that_mixes_up_set_and_reset_groups_fails_the_mixed_plan_test(
    broken: type[SimulatedCrossbar],
) -> None:
    with broken(4, 5, preset="ideal", seed=0, initial="mid") as xbar:
        with pytest.raises(AssertionError):
            SUITE.test_mixed_set_and_reset_groups_move_each_device_its_own_way(
                xbar, sim_witness(xbar)
            )
        # its own bookkeeping has every pulse of the plan: only the devices tell
        assert int(xbar.pulse_counts.sum()) > 0


def test_the_device_side_tests_pass_on_the_correct_backend() -> None:
    for test in (
        SUITE.test_unsafe_plan_reaches_no_device,
        SUITE.test_mixed_set_and_reset_groups_move_each_device_its_own_way,
        SUITE.test_pulses_are_counted_per_device,
        SUITE.test_empty_plan_sends_nothing,
    ):
        with SimulatedCrossbar(4, 5, preset="ideal", seed=0, initial="mid") as xbar:
            test(xbar, sim_witness(xbar))
