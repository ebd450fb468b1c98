"""Backend conformance suite: what every `CrossbarBackend` must do, whatever is behind it.

How to use it. In a test module (named test_*.py, in this folder), subclass
`BackendConformance` and give it a `backend` fixture that yields a fresh, open backend of a small
shape (a few rows and columns) and closes it afterwards:

    import pytest
    from conformance import BackendConformance

    class TestMyBackend(BackendConformance):
        set_pulse = PulseShape(amplitude_v=2.0, width_s=100e-9)   # optional overrides
        reset_pulse = PulseShape(amplitude_v=-2.0, width_s=100e-9)

        @pytest.fixture
        def backend(self):
            with MyBackend(...) as b:
                yield b

Parametrise the fixture (`@pytest.fixture(params=[...])`) to run the suite over several
configurations. The suite only uses the public contract of `protocols.backend`; optional
capabilities (analog product, snapshot) are checked against what `info()` declares: a backend
that declares one must honour it, one that does not must raise `BackendNotSupported`.

Class attributes a subclass may override:
- `set_pulse`, `reset_pulse`: nominal pulses the backend accepts within its safety limits;
- `pulses_per_step`: SET (then RESET) pulses per device used to see a conductance change;
- `mvm_rtol`: relative tolerance of `mvm` against `v @ read()` (read noise, converters);
- `exact_resume`: True if snapshot/restore must resume bit-identically (simulators).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from protocols.backend import (
    BackendInfo,
    BackendNotSupported,
    BackendStateError,
    CrossbarBackend,
)
from protocols.limits import LimitViolation
from protocols.plan import PulseGroup, PulsePlan, PulseShape


class BackendConformance:
    """Contract tests; a subclass provides the `backend` fixture."""

    set_pulse: ClassVar[PulseShape] = PulseShape(amplitude_v=2.0, width_s=100e-9)
    reset_pulse: ClassVar[PulseShape] = PulseShape(amplitude_v=-2.0, width_s=100e-9)
    pulses_per_step: ClassVar[int] = 8
    mvm_rtol: ClassVar[float] = 1e-9
    exact_resume: ClassVar[bool] = True

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def plan_of(backend: CrossbarBackend, shape: PulseShape, counts: np.ndarray) -> PulsePlan:
        return PulsePlan.from_groups(backend.shape, [PulseGroup(shape, counts)])

    def _half_counts(self, backend: CrossbarBackend) -> np.ndarray:
        """`pulses_per_step` pulses on the even-numbered devices, none on the others."""
        rows, cols = backend.shape
        counts = np.zeros((rows, cols), dtype=np.int64)
        counts.flat[::2] = self.pulses_per_step
        return counts

    # -- description -----------------------------------------------------------------------
    def test_info_describes_the_array(self, backend: CrossbarBackend) -> None:
        info = backend.info()
        assert isinstance(info, BackendInfo)
        assert (info.rows, info.cols) == backend.shape
        assert 0 < info.g_min_s < info.g_max_s
        assert info.kind
        assert not backend.closed

    # -- reading ---------------------------------------------------------------------------
    def test_read_all_and_blocks(self, backend: CrossbarBackend) -> None:
        rows, cols = backend.shape
        g = backend.read()
        assert g.shape == (rows, cols)
        assert g.dtype == np.float64
        assert np.all(np.isfinite(g))
        assert np.all(g > 0)
        assert backend.read(rows=[0], cols=[cols - 1]).shape == (1, 1)
        assert backend.read(rows=0).shape == (1, cols)
        assert backend.read(cols=slice(0, 2)).shape == (rows, min(2, cols))
        assert backend.read(rows=np.array([rows - 1, 0])).shape == (2, cols)

    def test_read_rejects_bad_indices(self, backend: CrossbarBackend) -> None:
        rows, _ = backend.shape
        with pytest.raises(IndexError):
            backend.read(rows=[rows])
        with pytest.raises(IndexError):
            backend.read(cols=[-1])
        with pytest.raises(ValueError):
            backend.read(rows=[0.5])  # type: ignore[list-item]

    # -- pulsing ---------------------------------------------------------------------------
    def test_apply_rejects_wrong_plans(self, backend: CrossbarBackend) -> None:
        rows, cols = backend.shape
        with pytest.raises(TypeError):
            backend.apply("not a plan")  # type: ignore[arg-type]
        wrong = PulsePlan.from_groups(
            (rows + 1, cols), [PulseGroup(self.set_pulse, np.ones((rows + 1, cols), np.int64))]
        )
        with pytest.raises(ValueError):
            backend.apply(wrong)
        assert int(backend.pulse_counts.sum()) == 0

    def test_unsafe_plan_sends_nothing(self, backend: CrossbarBackend) -> None:
        limit = backend.limits.max_set_v
        too_high = PulseShape(amplitude_v=limit * 1.5, width_s=self.set_pulse.width_s)
        counts = np.zeros(backend.shape, dtype=np.int64)
        counts[0, 0] = 1
        before = backend.pulse_counts
        with pytest.raises(LimitViolation, match=r"row=0, col=0"):
            backend.apply(self.plan_of(backend, too_high, counts))
        over = np.zeros(backend.shape, dtype=np.int64)
        over[-1, -1] = backend.limits.max_pulses_per_device_per_update + 1
        with pytest.raises(LimitViolation):
            backend.apply(self.plan_of(backend, self.set_pulse, over))
        np.testing.assert_array_equal(backend.pulse_counts, before)

    def test_empty_plan_sends_nothing(self, backend: CrossbarBackend) -> None:
        backend.apply(PulsePlan.empty(backend.shape))
        backend.apply(
            self.plan_of(backend, self.set_pulse, np.zeros(backend.shape, dtype=np.int64))
        )
        assert int(backend.pulse_counts.sum()) == 0

    def test_pulses_are_counted_per_device(self, backend: CrossbarBackend) -> None:
        counts = self._half_counts(backend)
        backend.apply(self.plan_of(backend, self.set_pulse, counts))
        backend.apply(self.plan_of(backend, self.reset_pulse, counts))
        np.testing.assert_array_equal(backend.pulse_counts, 2 * counts)

    def test_set_raises_and_reset_lowers_conductance(self, backend: CrossbarBackend) -> None:
        counts = self._half_counts(backend)
        pulsed = counts > 0
        g0 = backend.read()
        backend.apply(self.plan_of(backend, self.set_pulse, counts))
        g1 = backend.read()
        assert g1[pulsed].mean() > g0[pulsed].mean()
        backend.apply(self.plan_of(backend, self.reset_pulse, counts))
        g2 = backend.read()
        assert g2[pulsed].mean() < g1[pulsed].mean()

    # -- analog product -----------------------------------------------------------------------
    def test_mvm_matches_conductances_or_is_declared_absent(self, backend: CrossbarBackend) -> None:
        rows, cols = backend.shape
        v = np.linspace(-0.2, 0.2, rows)
        if not backend.info().supports_mvm:
            with pytest.raises(BackendNotSupported):
                backend.mvm(v)
            return
        g = backend.read()
        i_fwd = backend.mvm(v)
        assert i_fwd.shape == (cols,)
        scale = np.abs(v) @ g
        assert np.all(np.abs(i_fwd - v @ g) <= self.mvm_rtol * scale + 1e-300)
        u = np.linspace(0.1, -0.1, cols)
        i_bwd = backend.mvm(u, transpose=True)
        assert i_bwd.shape == (rows,)
        assert np.all(np.abs(i_bwd - u @ g.T) <= self.mvm_rtol * (np.abs(u) @ g.T) + 1e-300)
        batch = backend.mvm(np.stack([v, 2 * v, -v]))
        assert batch.shape == (3, cols)

    def test_mvm_rejects_bad_voltages(self, backend: CrossbarBackend) -> None:
        rows, _ = backend.shape
        if not backend.info().supports_mvm:
            return
        with pytest.raises(ValueError):
            backend.mvm(np.zeros(rows + 1))
        bad = np.zeros(rows)
        bad[0] = np.nan
        with pytest.raises(ValueError):
            backend.mvm(bad)

    # -- snapshots ---------------------------------------------------------------------------
    def test_snapshot_restore_resumes_or_is_declared_absent(self, backend: CrossbarBackend) -> None:
        counts = self._half_counts(backend)
        if not backend.info().supports_snapshot:
            with pytest.raises(BackendNotSupported):
                backend.snapshot()
            return
        state = backend.snapshot()
        backend.apply(self.plan_of(backend, self.set_pulse, counts))
        first = backend.read()
        first_counts = backend.pulse_counts
        backend.restore(state)
        np.testing.assert_array_equal(backend.pulse_counts, np.zeros(backend.shape, np.int64))
        backend.apply(self.plan_of(backend, self.set_pulse, counts))
        second = backend.read()
        np.testing.assert_array_equal(backend.pulse_counts, first_counts)
        if self.exact_resume:
            np.testing.assert_array_equal(first, second)
        else:
            np.testing.assert_allclose(first, second, rtol=0.1)

    # -- lifetime ----------------------------------------------------------------------------
    def test_closed_backend_refuses_everything(self, backend: CrossbarBackend) -> None:
        with backend as same:
            assert same is backend
        assert backend.closed
        backend.close()  # closing twice is harmless
        with pytest.raises(BackendStateError):
            backend.read()
        with pytest.raises(BackendStateError):
            backend.apply(PulsePlan.empty(backend.shape))
        with pytest.raises(BackendStateError):
            backend.mvm(np.zeros(backend.shape[0]))
        with pytest.raises(BackendStateError):
            backend.snapshot()
