"""Backend conformance suite: what every `CrossbarBackend` must do, whatever is behind it.

How to use it. In a test module (named test_*.py, in this folder), subclass
`BackendConformance` and give it two fixtures: `backend`, a fresh, open backend of a small
shape (a few rows and columns) closed afterwards, and `witness`, the device side of that
backend read without it (a `Witness`: the emulated array's conductances, its emulator's
own pulse log and frame counts):

    import pytest
    from conformance import BackendConformance, Witness, array_witness

    class TestMyBackend(BackendConformance):
        set_pulse = PulseShape(amplitude_v=2.0, width_s=100e-9)   # optional overrides
        reset_pulse = PulseShape(amplitude_v=-2.0, width_s=100e-9)

        @pytest.fixture
        def rig(self):
            core = MyEmulatorCore(make_array(3, 4, preset="ideal"))
            with MyEmulator(core) as emu, MyBackend(emu.address, 3, 4) as b:
                yield b, array_witness(core.array, log=lambda: list(core.log))

        @pytest.fixture
        def backend(self, rig):
            return rig[0]

        @pytest.fixture
        def witness(self, rig):
            return rig[1]

The tests that pulse judge what reached the devices by the witness, never by the
backend's own bookkeeping (`pulse_counts`), which a backend updates only after its own
checks: a backend that sends first and checks its limits afterwards keeps that bookkeeping
clean and still fails `test_unsafe_plan_reaches_no_device`.

Parametrise the fixtures to run the suite over several configurations. The suite only uses
the public contract of `protocols.backend`; optional capabilities (analog product,
snapshot) are checked against what `info()` declares: a backend that declares one must
honour it, one that does not must raise `BackendNotSupported`.

Class attributes a subclass may override:
- `set_pulse`, `reset_pulse`: nominal pulses the backend accepts within its safety limits;
- `pulses_per_step`: SET (then RESET) pulses per device used to see a conductance change;
- `mvm_rtol`: relative tolerance of `mvm` against `v @ read()` (read noise, converters);
- `exact_resume`: True if snapshot/restore must resume bit-identically (simulators).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
from numpy.typing import NDArray

from protocols.backend import (
    BackendInfo,
    BackendNotSupported,
    BackendStateError,
    CrossbarBackend,
)
from protocols.limits import LimitViolation
from protocols.plan import PulseGroup, PulsePlan, PulseShape
from sim_backend import PRESETS
from sim_backend.config import NeuroSimModel
from sim_backend.devices import law_multiplier


@dataclass
class Witness:
    """The device side of a backend, read without the backend under test.

    `conductances()`: the conductances the device model holds now (S), in the backend's
    coordinates, free of read noise. `pulses()`: the pulses each device received, counted
    by the device side (the emulator's pulse log, the emulated array's own count), or None
    where the device side keeps no per-device count (the simulator is its own device: its
    deposited energy and internal states, in `log`, stand for it). `log()`: anything else
    the device side recorded (its log of applied batches or pulses, the frames it received,
    a dry run's stream): compared for equality before and after. `preset`: the simulator
    preset of the devices; `ideal` (linear, noiseless, identical devices) lets the suite
    predict every change exactly.
    """

    conductances: Callable[[], NDArray[np.float64]]
    pulses: Callable[[], NDArray[np.int64] | None] = lambda: None
    log: Callable[[], Any] = lambda: None
    preset: str | None = None

    def state(self) -> tuple[NDArray[np.float64], NDArray[np.int64] | None, Any]:
        """Everything the device side holds now (copies)."""
        g = np.array(self.conductances(), dtype=np.float64, copy=True)
        pulses = self.pulses()
        return g, None if pulses is None else np.array(pulses, copy=True), self.log()

    @property
    def linear(self) -> bool:
        return self.preset == "ideal"

    def step_s(self, shape: PulseShape) -> float:
        """How far one pulse of `shape` moves a linear device (S, signed)."""
        cfg = PRESETS[str(self.preset)]
        model = cfg.model
        assert isinstance(model, NeuroSimModel) and model.nl_ltp == model.nl_ltd == 0.0
        states = model.states_ltp if shape.amplitude_v > 0 else model.states_ltd
        span = (model.g_max_s - model.g_min_s) / states
        return shape.polarity * law_multiplier(cfg, shape.amplitude_v, shape.width_s) * span


def array_witness(
    array: CrossbarBackend,
    *,
    block: tuple[slice, slice] = (slice(None), slice(None)),
    flush: Callable[[], None] | None = None,
    pulses: Callable[[], NDArray[np.int64]] | None = None,
    log: Callable[[], Any] | None = None,
    preset: str | None = None,
) -> Witness:
    """The witness of an emulated array (a `SimulatedCrossbar` standing for the devices):
    its conductances and, unless `pulses` says otherwise, its own pulse count, cut to
    `block`. `flush` hands pulses an emulator holds back (until its next read) to the
    array first. The array's rest outside the block is part of `log`: it must not move."""

    def settle() -> None:
        if flush is not None:
            flush()

    def conductances() -> NDArray[np.float64]:
        settle()
        return np.asarray(array.conductances())[block]  # type: ignore[attr-defined]

    def counts() -> NDArray[np.int64]:
        settle()
        return pulses()[block] if pulses is not None else array.pulse_counts[block]

    def record() -> Any:
        settle()
        outside = np.ones(array.shape, dtype=bool)
        outside[block] = False
        g = np.asarray(array.conductances())  # type: ignore[attr-defined]
        return (g[outside].tolist(), array.pulse_counts.tolist(), log() if log else None)

    preset = preset or getattr(getattr(array, "config", None), "name", None)
    return Witness(conductances, counts, record, preset)


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

    def unsafe_plans(self, backend: CrossbarBackend) -> list[tuple[str, PulsePlan]]:
        """Plans that break a limit, each with the device its refusal must name. In the
        last one the unsafe group comes second: a backend that checks group by group as it
        sends would already have delivered the first."""
        lim = backend.limits
        rows, cols = backend.shape
        last = f"row={rows - 1}, col={cols - 1}"

        def one(r: int, c: int, n: int = 1) -> np.ndarray:
            counts = np.zeros(backend.shape, dtype=np.int64)
            counts[r, c] = n
            return counts

        high_set = PulseShape(amplitude_v=lim.max_set_v * 1.5, width_s=self.set_pulse.width_s)
        high_reset = PulseShape(
            amplitude_v=-lim.max_reset_v * 1.5, width_s=self.reset_pulse.width_s
        )
        too_many = lim.max_pulses_per_device_per_update + 1
        safe_first = PulsePlan.from_groups(
            backend.shape,
            [PulseGroup(self.set_pulse, one(0, 0, 2)), PulseGroup(high_reset, one(-1, -1))],
        )
        return [
            ("row=0, col=0", self.plan_of(backend, high_set, one(0, 0))),
            (last, self.plan_of(backend, high_reset, one(-1, -1))),
            (last, self.plan_of(backend, self.set_pulse, one(-1, -1, too_many))),
            (last, safe_first),
        ]

    def test_unsafe_plan_reaches_no_device(
        self, backend: CrossbarBackend, witness: Witness
    ) -> None:
        """Judged by the device side: no device moves, the emulator logs nothing, receives
        no pulse; the backend's own count stays as it was too."""
        before = witness.state()
        counts_before = backend.pulse_counts
        for device, plan in self.unsafe_plans(backend):
            with pytest.raises(LimitViolation, match=device):
                backend.apply(plan)
            g, pulses, log = witness.state()
            np.testing.assert_array_equal(g, before[0], err_msg=f"a device moved ({device})")
            if before[1] is not None:
                np.testing.assert_array_equal(pulses, before[1], err_msg="a pulse reached it")
            assert log == before[2], f"the device side recorded something ({device})"
        np.testing.assert_array_equal(backend.pulse_counts, counts_before)

    def test_empty_plan_sends_nothing(self, backend: CrossbarBackend, witness: Witness) -> None:
        before = witness.state()
        backend.apply(PulsePlan.empty(backend.shape))
        backend.apply(
            self.plan_of(backend, self.set_pulse, np.zeros(backend.shape, dtype=np.int64))
        )
        assert int(backend.pulse_counts.sum()) == 0
        after = witness.state()
        np.testing.assert_array_equal(after[0], before[0])
        if before[1] is not None:
            np.testing.assert_array_equal(after[1], before[1])

    def test_pulses_are_counted_per_device(
        self, backend: CrossbarBackend, witness: Witness
    ) -> None:
        counts = self._half_counts(backend)
        before = witness.pulses()
        backend.apply(self.plan_of(backend, self.set_pulse, counts))
        backend.apply(self.plan_of(backend, self.reset_pulse, counts))
        np.testing.assert_array_equal(backend.pulse_counts, 2 * counts)
        after = witness.pulses()
        if before is not None and after is not None:  # what the device side counted
            np.testing.assert_array_equal(after - before, 2 * counts)

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

    def mixed_counts(self, backend: CrossbarBackend) -> tuple[np.ndarray, np.ndarray]:
        """SET and RESET counts of one plan: devices that only rise, only fall, get both
        (SET first, more RESET than SET: net down), or nothing, in a pattern that puts
        each kind on several rows and columns."""
        rows, cols = backend.shape
        kind = (np.arange(rows)[:, None] + 2 * np.arange(cols)[None, :]) % 4
        n = self.pulses_per_step
        up = np.where(kind == 0, n, np.where(kind == 2, n // 2, 0)).astype(np.int64)
        down = np.where(kind == 1, n, np.where(kind == 2, n, 0)).astype(np.int64)
        return up, down

    def test_mixed_set_and_reset_groups_move_each_device_its_own_way(
        self, backend: CrossbarBackend, witness: Witness
    ) -> None:
        """One plan with a SET and a RESET group: each device moves in its own direction,
        by what its own pulses are worth on a linear device; the others do not move."""
        n = self.pulses_per_step
        lift = np.full(backend.shape, 2 * n, dtype=np.int64)  # away from G_min first
        backend.apply(self.plan_of(backend, self.set_pulse, lift))
        up, down = self.mixed_counts(backend)
        plan = PulsePlan.from_groups(
            backend.shape,
            [PulseGroup(self.set_pulse, up), PulseGroup(self.reset_pulse, down)],
        )
        g0 = witness.state()[0]
        backend.apply(plan)
        moved = witness.state()[0] - g0
        net = up - down
        still = (up == 0) & (down == 0)
        np.testing.assert_array_equal(moved[still], 0.0, err_msg="an unpulsed device moved")
        if not witness.linear:  # a noisy device's few steps may go either way
            return
        assert np.all(moved[net > 0] > 0) and np.all(moved[net < 0] < 0), moved
        expected = up * witness.step_s(self.set_pulse) + down * witness.step_s(self.reset_pulse)
        step = abs(witness.step_s(self.set_pulse))
        np.testing.assert_allclose(moved, expected, rtol=0, atol=1e-3 * step)

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


def sim_witness(xbar: Any) -> Witness:
    """The simulator is its own device: its true conductances, and for the pulses its
    internal states and the energy each device has taken in (every pulse deposits some),
    none of which the base class's bookkeeping touches."""

    def record() -> Any:
        return (xbar.states().tolist(), np.asarray(xbar.energy_j).tolist())

    return Witness(xbar.conductances, log=record, preset=xbar.config.name)


class RigConformance(BackendConformance):
    """The suite for a backend built together with its device side: a subclass gives a
    `rig` fixture yielding (backend, witness)."""

    @pytest.fixture
    def backend(self, rig: tuple[CrossbarBackend, Witness]) -> CrossbarBackend:
        return rig[0]

    @pytest.fixture
    def witness(self, rig: tuple[CrossbarBackend, Witness]) -> Witness:
        return rig[1]
