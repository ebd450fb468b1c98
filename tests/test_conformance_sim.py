"""The simulated crossbar passes the backend conformance suite with every preset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conformance import BackendConformance, Witness, sim_witness

from protocols.backend import CrossbarBackend
from sim_backend import PRESETS, SimulatedCrossbar


class TestSimulatedCrossbar(BackendConformance):
    @pytest.fixture(params=sorted(PRESETS))
    def backend(self, request: pytest.FixtureRequest) -> Iterator[CrossbarBackend]:
        preset = PRESETS[request.param]
        self.set_pulse = preset.set_pulse  # type: ignore[misc]
        self.reset_pulse = preset.reset_pulse  # type: ignore[misc]
        # Mid-range start: at G_min a soft-bounds RESET moves a device by ~1e-4 of its range,
        # less than its C2C noise, so the RESET direction would be decided by the noise draw.
        with SimulatedCrossbar(5, 7, preset=request.param, seed=3, initial="mid") as xbar:
            yield xbar

    @pytest.fixture
    def witness(self, backend: SimulatedCrossbar) -> Witness:
        return sim_witness(backend)


class TestSimulatedCrossbarWithReadout(BackendConformance):
    """Read noise and converters on: mvm matches the conductances only within tolerance."""

    mvm_rtol = 0.05

    @pytest.fixture
    def backend(self) -> Iterator[CrossbarBackend]:
        with SimulatedCrossbar(
            6, 4, preset="taox_hfox", seed=5, readout={"read_sigma": 0.002, "adc_bits": 12}
        ) as xbar:
            yield xbar

    @pytest.fixture
    def witness(self, backend: SimulatedCrossbar) -> Witness:
        return sim_witness(backend)
