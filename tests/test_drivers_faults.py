"""Exactly-once delivery under injected faults, judged by the emulators' own logs.

5 % of each fault kind (late replies, dropped replies, garbled bytes, dropped links) over
1000 pulse batches, through the real pyserial and pyvisa-py stacks: every batch appears in
the emulator's log exactly once, with exactly its pulses, reads are retried, and the
array ends where the same plans applied directly to the simulator put it. The emulated
SMU runs its trains in real time and answers `*OPC?` before they end, as a B2900 does.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from drivers import open_backend
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_scpi import Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from drivers.faults import Fault, FaultConfig
from protocols.plan import PulseGroup, PulsePlan
from sim_backend import SimulatedCrossbar, default_limits, get_preset

N_BATCHES = 1000
#: The station makes several exchanges per batch: 400 batches meet every fault kind many times.
N_VISA_BATCHES = 400
FAULTS = FaultConfig(
    spike_rate=0.05,
    spike_s=0.02,
    drop_rate=0.05,
    garble_rate=0.05,
    disconnect_rate=0.05,
    seed=11,
)


def batches(shape: tuple[int, int], preset: str, n: int, seed: int) -> list[PulsePlan]:
    """Random single-row SET or RESET batches (one group each)."""
    cfg = get_preset(preset)
    rng = np.random.default_rng(seed)
    plans = []
    for _ in range(n):
        counts = np.zeros(shape, dtype=np.int64)
        row = int(rng.integers(shape[0]))
        counts[row] = rng.integers(0, 4, shape[1])
        counts[row, int(rng.integers(shape[1]))] += 1  # never empty
        pulse = cfg.set_pulse if rng.random() < 0.5 else cfg.reset_pulse
        plans.append(PulsePlan.from_groups(shape, [PulseGroup(pulse, counts)]))
    return plans


@pytest.mark.slow
def test_serial_board_exactly_once_under_faults() -> None:
    shape, preset = (2, 3), "epiram"
    plans = batches(shape, preset, N_BATCHES, seed=5)
    reference = SimulatedCrossbar(*shape, preset=preset, seed=9)
    core = BoardCore(make_array(*shape, preset=preset, seed=9))
    reads_ok = 0
    with (
        SerialEmulator(core, FAULTS, deaf_s=0.005) as emu,
        open_backend(
            "serial",
            emu.path,
            *shape,
            limits=default_limits(get_preset(preset)),
            timeout_s=0.012,
            retries=60,
        ) as be,  # the preset's own +5 V SET needs more room than the 3 V default
    ):
        for k, plan in enumerate(plans):
            be.apply(plan)
            reference.apply(plan)
            if k % 100 == 99:
                np.testing.assert_array_equal(be.read(), reference.read())
                reads_ok += 1
        # failures were recovered on the same link: a timeout never reopens the port
        assert be.stats.retries > 0 and be.stats.reconnects == 0
    injected = emu.faults.injected
    for kind in Fault:
        if kind is not Fault.NONE:
            assert injected[kind] > 0, f"no {kind.value} fault was injected"
    log = core.log.entries
    assert [e.batch for e in log] == list(range(1, N_BATCHES + 1))  # none lost, none twice
    assert [e.digest for e in log] == [p.digest() for p in plans]
    assert [e.pulses for e in log] == [p.total_pulses for p in plans]
    assert reads_ok == N_BATCHES // 100
    np.testing.assert_array_equal(core.array.read(), reference.read())


@pytest.mark.slow
def test_visa_station_exactly_once_under_faults() -> None:
    shape, preset = (2, 2), "ideal"
    plans = []
    for plan in batches(shape, preset, N_VISA_BATCHES, seed=6):
        # a B2900 cannot fire nanosecond pulses: the emulated SMU is told it can
        plans.append(plan)
    reference = SimulatedCrossbar(*shape, preset=preset, seed=9)
    station = Station(make_array(*shape, preset=preset, seed=9), min_width_s=1e-9)
    with ScpiEmulator(station, FAULTS) as emu:
        be = open_backend(
            "visa",
            emu.smu_resource,
            *shape,
            matrix_resource=emu.matrix_resource,
            min_width_s=1e-9,
            timeout_s=0.012,
            retries=60,
        )
        with be:
            for k, plan in enumerate(plans):
                be.apply(plan)
                reference.apply(plan)
                if k % 100 == 99:
                    np.testing.assert_allclose(be.read(), reference.read(), rtol=1e-6)
    injected = emu.faults.injected
    for kind in (Fault.SPIKE, Fault.DROP, Fault.GARBLE_OUT, Fault.DISCONNECT_BEFORE):
        assert injected[kind] > 0, f"no {kind.value} fault was injected"
    # the SMU log, grouped by pulse-count epoch (one per batch; a re-cleared epoch is empty)
    by_epoch: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(shape, dtype=np.int64))
    order: list[int] = []
    for train in station.log:
        if train.epoch not in by_epoch:
            order.append(train.epoch)
        by_epoch[train.epoch][train.row, train.col] += train.count
    assert len(order) == N_VISA_BATCHES
    for k, (epoch, plan) in enumerate(zip(order, plans, strict=True)):
        np.testing.assert_array_equal(
            by_epoch[epoch], plan.counts_per_device(), err_msg=f"batch {k}"
        )
    station.flush()
    np.testing.assert_allclose(station.array.read(), reference.read(), rtol=1e-9, atol=0)
    # every recovery waited for the train to end before the matrix moved
    assert station.hot_switches == []
