"""The base class refuses what a faulty backend returns: NaN/inf or wrongly shaped data."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from protocols.backend import BackendError, BackendInfo, CrossbarBackend
from protocols.plan import PulsePlan


class Faulty(CrossbarBackend):
    """A 2 x 3 array whose reads and currents are whatever the test sets."""

    def __init__(self) -> None:
        super().__init__(2, 3)
        self.g = np.full((2, 3), 1e-6)
        self.currents: NDArray[np.float64] | None = None

    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        return self.g[np.ix_(rows, cols)]

    def _apply(self, plan: PulsePlan) -> None:
        raise AssertionError("no plan is applied in these tests")

    def _mvm(self, voltages: NDArray[np.float64], transpose: bool) -> NDArray[np.float64]:
        if self.currents is not None:
            return self.currents
        return voltages @ (self.g.T if transpose else self.g)

    def _info(self) -> BackendInfo:
        return BackendInfo(
            name="faulty", kind="test", rows=2, cols=3, g_min_s=1e-7, g_max_s=1e-5,
            supports_mvm=True,
        )  # fmt: skip


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_read_is_refused(bad: float) -> None:
    backend = Faulty()
    np.testing.assert_allclose(backend.read(), 1e-6)
    backend.g[1, 2] = bad
    with pytest.raises(BackendError, match="non-finite conductance"):
        backend.read()


def test_non_finite_or_misshapen_currents_are_refused() -> None:
    backend = Faulty()
    np.testing.assert_allclose(backend.mvm(np.ones(2)), np.full(3, 2e-6))
    np.testing.assert_allclose(backend.mvm(np.ones(3), transpose=True), np.full(2, 3e-6))
    backend.currents = np.array([[1e-6, np.nan, 1e-6]])
    with pytest.raises(BackendError, match="non-finite current"):
        backend.mvm(np.ones(2))
    backend.currents = np.zeros((1, 2))
    with pytest.raises(BackendError, match=r"shape \(1, 2\), expected \(1, 3\)"):
        backend.mvm(np.ones(2))
