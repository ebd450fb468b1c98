"""The conformance suite catches broken backends (it is not a rubber stamp)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conformance import BackendConformance

from protocols.plan import PulseGroup, PulsePlan
from sim_backend import SimulatedCrossbar


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
