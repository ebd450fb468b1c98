"""The station with a Keithley 4200A-SCS as its pulse source: a 4225-PMU fires nanosecond
pulses on matrix row A, SMU1 reads on row C, over KXCI's NUL-terminated LAN link, through
pyvisa-py against the emulator."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from drivers import kxci as K
from drivers import open_backend
from drivers.emu_array import make_array
from drivers.emu_kxci import KxciCore
from drivers.emu_scpi import Station
from drivers.emu_tcp import ScpiEmulator
from drivers.factory import _source_kind
from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape
from protocols.protocol_file import load_protocol
from sim_backend import SimulatedCrossbar, get_preset

SHAPE = (2, 3)


class Kxci:
    def __init__(self, preset: str = "epiram", seed: int = 4) -> None:
        self.station = Station(make_array(*SHAPE, preset=preset, seed=seed))
        self.core = KxciCore(self.station)
        self.emu = ScpiEmulator(self.station, source=self.core).start()

    def open(self, **options: object) -> object:
        options.setdefault("limits", EPIRAM_LIMITS)
        return open_backend(
            "visa",
            self.emu.smu_resource,
            *SHAPE,
            matrix_resource=self.emu.matrix_resource,
            pulse_source="4200a-pmu",
            **options,
        )

    def events(self) -> list[str]:
        return [f"{e.who}: {e.what}" for e in self.station.events]


@pytest.fixture
def kxci() -> Iterator[Kxci]:
    k = Kxci()
    yield k
    k.emu.stop()


#: EpiRAM's library protocol limits: its cited +5 V SET is over the 3 V an instrument gets
#: without a protocol (the 4225-PMU sources up to 10 V).
EPIRAM_LIMITS = load_protocol(
    Path(__file__).parents[1] / "protocols/library/epiram.yaml"
).limits.safety_limits()

#: A width a B2900 cannot fire (its minimum is 50 us) and the 4225-PMU can (60 ns minimum).
NS_WIDTH_S = 1e-7


def preset_plan(preset: str = "epiram") -> PulsePlan:
    """The preset's own SET and RESET amplitudes, fired as 100 ns pulses, on a few devices."""
    cfg = get_preset(preset)
    set_counts = np.array([[3, 0, 1], [0, 2, 0]])
    reset_counts = np.array([[0, 2, 0], [1, 0, 0]])
    return PulsePlan.from_groups(
        SHAPE,
        [
            PulseGroup(cfg.set_pulse.model_copy(update={"width_s": NS_WIDTH_S}), set_counts),
            PulseGroup(cfg.reset_pulse.model_copy(update={"width_s": NS_WIDTH_S}), reset_counts),
        ],
    )


def test_nanosecond_pulses_land_as_on_the_simulator(kxci: Kxci) -> None:
    """The preset's 100 ns pulses go through without any minimum-width override, and the
    emulated array ends exactly where the simulator puts it; reads through SMU1 agree."""
    plan = preset_plan()
    reference = SimulatedCrossbar(*SHAPE, preset="epiram", seed=4)
    with kxci.open() as be:
        be.apply(plan)  # type: ignore[attr-defined]
        g = be.read()  # type: ignore[attr-defined]
        info = be.info()  # type: ignore[attr-defined]
        assert info.details["pulse_source"] == "4200a-pmu"
        assert (info.min_width_s, info.max_abs_v, info.bias_schemes) == (6e-8, 10.0, ("none",))
    reference.apply(plan)
    np.testing.assert_allclose(g, reference.read(), rtol=5e-16)  # I / V: the last bit at most
    np.testing.assert_array_equal(kxci.station.array.read(), reference.read())
    assert {t.width_s for t in kxci.station.log} == {NS_WIDTH_S}
    assert kxci.station.hot_switches == []


def test_relays_wait_for_the_end_of_every_burst(kxci: Kxci) -> None:
    """`:PMU:EXECUTE` answers at once; the station polls `:PMU:TEST:STATUS?` until the
    burst is over before the matrix moves."""
    counts = np.array([[400, 0, 400], [0, 0, 0]])  # 80 ms a device at 100 us
    plan = PulsePlan.from_groups(
        SHAPE, [PulseGroup(PulseShape(amplitude_v=2.0, width_s=1e-4), counts)]
    )
    with kxci.open(limits=SafetyLimits(max_pulses_per_device_per_update=500)) as be:
        be.apply(plan)  # type: ignore[attr-defined]
    got = Counter()
    for t in kxci.station.log:
        got[(t.row, t.col)] += t.count
    assert dict(got) == {(0, 0): 400, (0, 2): 400}
    assert kxci.station.hot_switches == []


def test_widths_below_the_pmu_minimum_are_refused_before_sending(kxci: Kxci) -> None:
    short = PulsePlan.from_groups(
        SHAPE, [PulseGroup(PulseShape(amplitude_v=2.0, width_s=5e-8), np.ones(SHAPE, int))]
    )
    with kxci.open() as be:
        before = kxci.emu.lines
        with pytest.raises(InputError, match=r"width 5e-08 s is below .* 6e-08 s"):
            be.apply(short)  # type: ignore[attr-defined]
        assert kxci.emu.lines == before
    assert kxci.station.log == []


def test_the_station_shuts_down_in_order(kxci: Kxci) -> None:
    with kxci.open() as be:
        be.apply(preset_plan())  # type: ignore[attr-defined]
        be.read()  # type: ignore[attr-defined]
    events = kxci.events()
    off = events.index("pmu: output off")
    assert events.index("smu4200: output off") > off
    assert events.index("matrix: open all", off) > off
    assert events.index("matrix: open all") < events.index("pmu: output on")  # at start-up
    assert not kxci.core.pmu_output and not kxci.core.smu_on
    assert kxci.station.closed == set()
    assert not kxci.core.running(time.monotonic())


def test_the_dialect_is_chosen_by_the_kxci_port_or_the_option() -> None:
    assert _source_kind(f"TCPIP0::192.168.1.20::{K.LAN_PORT}::SOCKET", "auto") == "4200a-pmu"
    assert _source_kind("TCPIP0::192.168.1.20::5025::SOCKET", "auto") == "auto"  # *IDN? tells
    assert _source_kind("GPIB0::17::INSTR", "4200a-pmu") == "4200a-pmu"
    with pytest.raises(InputError, match="pulse_source='pmu'"):
        _source_kind("GPIB0::17::INSTR", "pmu")
