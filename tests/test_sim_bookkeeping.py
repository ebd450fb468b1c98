"""Bookkeeping of the simulator: pulse counts, energy, snapshots, info."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from protocols.plan import PulseGroup, PulsePlan, PulseShape
from sim_backend import DeviceConfig, SimulatedCrossbar, get_preset

PRESET = get_preset("taox_hfox")


def random_plan(
    rng: np.random.Generator,
    shape: tuple[int, int],
    bias: str = "none",
    preset: DeviceConfig = PRESET,
) -> PulsePlan:
    counts = rng.integers(0, 9, size=shape)
    up = rng.random(shape) < 0.5
    return PulsePlan.from_groups(
        shape,
        [
            PulseGroup(preset.set_pulse, np.where(up, counts, 0)),
            PulseGroup(preset.reset_pulse, np.where(up, 0, counts)),
        ],
        bias=bias,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("name", ["taox_hfox", "vteam"])
def test_energy_is_v2_g_t_per_pulse_at_the_conductance_before(name: str) -> None:
    preset = get_preset(name)
    xbar = SimulatedCrossbar(6, 5, preset=name, seed=2)
    rng = np.random.default_rng(0)
    total = 0.0
    per_device = np.zeros(xbar.shape)
    for k in range(4):
        p = random_plan(rng, xbar.shape, preset=preset)
        if k == 3:  # groups of different V^2 t take the general path
            longer = PulseShape(amplitude_v=preset.set_pulse.amplitude_v, width_s=3e-7)
            p = PulsePlan.from_groups(
                xbar.shape, [PulseGroup(longer, p.groups[0].counts), p.groups[1]]
            )
        g = xbar.conductances()
        expected = np.zeros(xbar.shape)
        for grp in p.groups:
            expected += grp.shape.amplitude_v**2 * grp.shape.width_s * grp.counts * g
        xbar.apply(p)
        assert xbar.last_plan_energy_j == pytest.approx(float(expected.sum()), rel=1e-5)
        assert xbar.last_plan_energy_j == pytest.approx(p.energy_estimate_j(g), rel=1e-5)
        total += float(expected.sum())
        per_device += expected
    np.testing.assert_allclose(xbar.energy_j, per_device, rtol=1e-5)
    assert xbar.total_energy_j == pytest.approx(total, rel=1e-5)
    one = xbar.pulse_energy_j(preset.set_pulse)
    shape = preset.set_pulse
    np.testing.assert_allclose(one, shape.amplitude_v**2 * shape.width_s * xbar.conductances())


def test_pulse_counts_accumulate_per_device() -> None:
    xbar = SimulatedCrossbar(4, 4, preset="taox_hfox", seed=2)
    rng = np.random.default_rng(1)
    plans = [random_plan(rng, xbar.shape) for _ in range(4)]
    for p in plans:
        xbar.apply(p)
    np.testing.assert_array_equal(xbar.pulse_counts, sum(p.counts_per_device() for p in plans))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"c2c__sampling": "exact"},
        {
            "readout": {"read_sigma": 0.02},
            "drift": {"nu": 0.02, "relax_sigma": 0.01},
            "law": {"kind": "exponential", "v_slope_v": 0.3},
            "endurance": {"degrade_after": 50, "fail_after": 200},
        },
    ],
)
def test_snapshot_restore_continues_bit_identically(overrides: dict) -> None:
    def steps(xbar: SimulatedCrossbar, rng: np.random.Generator, n: int) -> list[np.ndarray]:
        out = []
        for _ in range(n):
            xbar.apply(random_plan(rng, xbar.shape, bias="v3"))
            xbar.elapse(10.0)
            out.append(xbar.read())
            out.append(xbar.mvm(np.linspace(-0.1, 0.1, xbar.shape[0])))
        return out

    xbar = SimulatedCrossbar(7, 9, preset="taox_hfox", seed=5, c2c={"buffer_reuse": 3}, **overrides)
    rng = np.random.default_rng(2)
    steps(xbar, rng, 4)
    # The snapshot survives a round trip through pickle (what a checkpoint file does).
    state = pickle.loads(pickle.dumps(xbar.snapshot()))
    rng_state = rng.bit_generator.state
    first = steps(xbar, rng, 8)
    energy = xbar.total_energy_j
    # Same object, restored ...
    xbar.restore(state)
    rng.bit_generator.state = rng_state
    second = steps(xbar, rng, 8)
    # ... and a fresh object built with the same configuration and seed.
    other = SimulatedCrossbar(
        7, 9, preset="taox_hfox", seed=5, c2c={"buffer_reuse": 3}, **overrides
    )
    other.restore(state)
    rng.bit_generator.state = rng_state
    third = steps(other, rng, 8)
    for a, b, c in zip(first, second, third, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert other.total_energy_j == energy
    np.testing.assert_array_equal(other.pulse_counts, xbar.pulse_counts)


def test_restore_refuses_a_snapshot_of_another_device() -> None:
    xbar = SimulatedCrossbar(3, 3, preset="taox_hfox", seed=1)
    state = xbar.snapshot()
    with pytest.raises(ValueError, match="another device configuration or seed"):
        SimulatedCrossbar(3, 3, preset="taox_hfox", seed=2).restore(state)
    with pytest.raises(ValueError, match="another device configuration or seed"):
        SimulatedCrossbar(3, 3, preset="pcmo", seed=1).restore(state)
    with pytest.raises(ValueError, match="shape"):
        SimulatedCrossbar(3, 4, preset="taox_hfox", seed=1).restore(state)


def test_initial_state_and_info() -> None:
    for initial, expected in (("min", PRESET.g_min_s), ("max", PRESET.g_max_s)):
        xbar = SimulatedCrossbar(
            3,
            3,
            preset="taox_hfox",
            seed=0,
            initial=initial,
            d2d={"g_min_rel_sigma": 0, "g_max_rel_sigma": 0},
        )
        np.testing.assert_allclose(xbar.read(), expected, rtol=1e-6)
    xbar = SimulatedCrossbar(3, 3, preset="taox_hfox", seed=0, initial=0.25)
    lo, hi = xbar.device_bounds()
    np.testing.assert_allclose(xbar.read(), lo + 0.25 * (hi - lo), rtol=1e-6)
    info = xbar.info()
    assert info.kind == "sim" and info.supports_mvm and info.supports_snapshot
    assert info.details["preset"] == "taox_hfox"
    assert info.details["threshold_set_v"] == PRESET.threshold_set_v
    assert info.details["set_pulse"] == {"amplitude_v": 1.6, "width_s": 50e-9}  # the device file's


def test_default_limits_admit_the_nominal_pulses() -> None:
    """The default safety envelope lets a preset's nominal pulses (and ISPP up to 1.5x) pass,
    and stops anything beyond it."""
    from protocols.limits import LimitViolation
    from protocols.plan import PulseShape

    for name in ("ag_asi", "vteam"):
        preset = get_preset(name)
        xbar = SimulatedCrossbar(2, 2, preset=name)
        ones = np.ones((2, 2), dtype=np.int64)
        xbar.apply(PulsePlan.from_groups((2, 2), [PulseGroup(preset.set_pulse, ones)]))
        big = PulseShape(
            amplitude_v=max(3.0, 1.5 * preset.set_pulse.amplitude_v) * 1.01, width_s=1e-7
        )
        with pytest.raises(LimitViolation):
            xbar.apply(PulsePlan.from_groups((2, 2), [PulseGroup(big, ones)]))
