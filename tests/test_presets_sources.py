"""Presets match the devices they cite: pulses, thresholds, their sources, half-select disturb,
and aihwkit's noise and spread forms for the soft-bounds device."""

from __future__ import annotations

import re

import numpy as np
import pytest

from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape
from sim_backend import PRESETS, SimulatedCrossbar, get_preset
from sim_backend.config import DeviceConfig, SoftBoundsModel
from sim_backend.presets import THRESHOLD_FRACTION

NAMES = sorted(PRESETS)
REQUIRED = ("g_window", "states", "nl", "set_pulse", "reset_pulse", "thresholds", "c2c", "d2d")
WIDE = SafetyLimits(max_set_v=20, max_reset_v=20, max_width_s=1.0, max_energy_per_update_j=1.0)


def _si_seconds(value: float, unit: str) -> float:
    return value * {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]


@pytest.mark.parametrize("name", NAMES)
def test_every_number_names_its_source_and_the_stated_pulses_are_the_preset_s(name: str) -> None:
    cfg = PRESETS[name]
    sources = dict(cfg.sources)
    assert set(REQUIRED) <= set(sources), set(REQUIRED) - set(sources)
    assert all(text.strip() for text in sources.values())
    # The pulse each source states is the pulse the preset uses (no drift between the two).
    for key, pulse in (("set_pulse", cfg.set_pulse), ("reset_pulse", cfg.reset_pulse)):
        found = re.match(r"([+-][\d.]+) V, ([\d.]+) (s|ms|us|ns)", sources[key])
        assert found, sources[key]
        assert float(found.group(1)) == pytest.approx(pulse.amplitude_v)
        width = _si_seconds(float(found.group(2)), found.group(3))
        assert width == pytest.approx(pulse.width_s)


# Values checked against the cited device files (docs/devices.md names them):
# NeuroSim MLP_NeuroSim_V3.0 Cell.cpp RealDevice and MELISO+ config_files/device_*.yaml.
CITED = {
    "ag_asi": ((3.2, 300e-6), (-2.8, 300e-6), 97, 100, 0.035),
    "alox_hfo2": ((0.9, 100e-6), (-1.0, 100e-6), 40, 40, 0.05),
    "epiram": ((5.0, 5e-6), (-3.0, 5e-6), 256, 256, 0.02),
    "taox_hfox": ((1.6, 50e-9), (-1.6, 50e-9), 128, 128, 0.037),
}


@pytest.mark.parametrize("name", sorted(CITED))
def test_presets_use_the_cited_pulses_states_and_noise(name: str) -> None:
    cfg = PRESETS[name]
    set_p, reset_p, states_ltp, states_ltd, c2c = CITED[name]
    assert (cfg.set_pulse.amplitude_v, cfg.set_pulse.width_s) == set_p
    assert (cfg.reset_pulse.amplitude_v, cfg.reset_pulse.width_s) == reset_p
    model = cfg.model
    assert (model.states_ltp, model.states_ltd) == (states_ltp, states_ltd)  # type: ignore[union-attr]
    assert cfg.c2c.sigma == c2c


def test_thresholds_sit_inside_the_v2_window_of_the_nominal_pulse() -> None:
    for name, cfg in PRESETS.items():
        for v_nom, v_th in (
            (cfg.set_pulse.amplitude_v, cfg.threshold_set_v),
            (-cfg.reset_pulse.amplitude_v, cfg.threshold_reset_v),
        ):
            assert v_nom / 2 < v_th < v_nom, name
            if name not in ("vteam", "ideal"):  # their thresholds are their own choices
                assert v_th == pytest.approx(THRESHOLD_FRACTION * v_nom), name


def _half_select_moves(cfg: DeviceConfig, amplitude: float) -> bool:
    """One pulse of `amplitude` on the centre of a 3 x 3 passive array under V/2 bias: did
    any half-selected neighbour (same row or column) move?"""
    quiet = cfg.with_overrides(
        d2d={
            "nl_sigma": 0,
            "states_rel_sigma": 0,
            "g_min_rel_sigma": 0,
            "g_max_rel_sigma": 0,
            "v_threshold_rel_sigma": 0,
        },
        c2c={"sigma": 0},
        initial="mid",
    )
    array = SimulatedCrossbar(3, 3, preset=quiet, seed=0, limits=WIDE)
    nominal = cfg.set_pulse if amplitude > 0 else cfg.reset_pulse
    counts = np.zeros((3, 3), dtype=np.int64)
    counts[1, 1] = 1
    shape = PulseShape(amplitude_v=amplitude, width_s=nominal.width_s)
    before = array.conductances()
    array.apply(PulsePlan.from_groups((3, 3), [PulseGroup(shape, counts)], bias="v2"))
    after = array.conductances()
    assert after[1, 1] != before[1, 1]  # the selected device itself switched
    neighbours = np.array([after[1, 0], after[1, 2], after[0, 1], after[2, 1]])
    reference = np.array([before[1, 0], before[1, 2], before[0, 1], before[2, 1]])
    assert (after[[0, 0, 2, 2], [0, 2, 0, 2]] == before[[0, 0, 2, 2], [0, 2, 0, 2]]).all()
    return bool((neighbours != reference).any())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("polarity", [1, -1])
def test_v2_half_select_disturbs_exactly_where_the_threshold_says(name: str, polarity: int) -> None:
    cfg = PRESETS[name]
    nominal = cfg.set_pulse if polarity > 0 else cfg.reset_pulse
    v_th = cfg.threshold_set_v if polarity > 0 else cfg.threshold_reset_v
    v_nom = abs(nominal.amplitude_v)
    # The nominal pulse: its V/2 is below the preset's threshold, so neighbours stay put.
    assert _half_select_moves(cfg, polarity * v_nom) is (v_nom / 2 > v_th) is False
    # Just below and just above twice the threshold: V/2 crosses it.
    assert not _half_select_moves(cfg, polarity * 2 * v_th * 0.99)
    assert _half_select_moves(cfg, polarity * 2 * v_th * 1.01)


def test_a_device_whose_threshold_is_below_v2_is_disturbed_by_its_own_nominal_pulse() -> None:
    # Ag:a-Si with a 1.5 V SET threshold: the nominal 3.2 V SET puts 1.6 V on half-selected cells.
    cfg = PRESETS["ag_asi"].with_overrides(law={"v_threshold_set_v": 1.5})
    assert _half_select_moves(cfg, cfg.set_pulse.amplitude_v)


def test_nominal_pulse_energy_follows_the_cited_pulse() -> None:
    # V^2 G t at G_max: Ag:a-Si 3.2 V, 300 us on 38.462 nS; EpiRAM 5 V, 5 us on 12.346 uS.
    for name, expected in (
        ("ag_asi", 3.2**2 * 3.8462e-8 * 300e-6),
        ("epiram", 25 * 1.2345679e-5 * 5e-6),
    ):
        cfg = PRESETS[name]
        array = SimulatedCrossbar(1, 1, preset=cfg, seed=0, initial="max", d2d={"nl_sigma": 0})
        assert array.pulse_energy_j(cfg.set_pulse)[0, 0] == pytest.approx(expected, rel=1e-6)


def test_soft_bounds_is_aihwkit_s_rerams_b_device_mapped_to_the_window() -> None:
    cfg = PRESETS["soft_bounds"]
    assert isinstance(cfg.model, SoftBoundsModel)
    # dw_min 0.002 over w in [-0.75, 1.25]: 0.002 / 1.25 up at G_min, 0.002 / 0.75 down at G_max,
    # equal (0.001 of the window) at the symmetry point w = 0.
    assert cfg.model.step_up == pytest.approx(0.0016)
    assert cfg.model.step_down == pytest.approx(0.002 / 0.75)
    x_sym = 0.75 / 2.0
    assert cfg.model.step_up * (1 - x_sym) == pytest.approx(cfg.model.step_down * x_sym)
    assert cfg.c2c.form == "additive" and cfg.c2c.sigma == pytest.approx(3.75 * 0.001)
    assert cfg.d2d.states_rel_sigma == 0.3 and cfg.d2d.up_down_sigma == 0.01
    assert "ReRamSBPresetDevice" in cfg.source and "GokmenVlasov" not in cfg.source


def _one_update(form: str, initial: float, pulses: int) -> np.ndarray:
    array = SimulatedCrossbar(
        200,
        200,
        preset="soft_bounds",
        seed=4,
        initial=initial,
        d2d={"states_rel_sigma": 0, "up_down_sigma": 0, "g_max_rel_sigma": 0},
        c2c={"sigma": 0.3, "form": form},
    )
    cfg = array.config
    before = array.states().astype(np.float64)
    counts = np.full((200, 200), pulses, dtype=np.int64)
    array.apply(PulsePlan.from_groups((200, 200), [PulseGroup(cfg.set_pulse, counts)]))
    return array.states().astype(np.float64) - before


def test_multiplicative_c2c_scales_each_pulse_s_step_as_in_aihwkit() -> None:
    step = 0.0016
    # Mid-window, 9 pulses: sigma * sqrt(sum of the 9 mean steps squared).
    x0 = 0.5
    steps = step * (1 - x0) * (1 - step) ** np.arange(9)
    moved = _one_update("multiplicative", x0, 9)
    assert moved.mean() == pytest.approx(steps.sum(), rel=1e-3)
    assert moved.std() == pytest.approx(0.3 * np.sqrt((steps**2).sum()), rel=0.03)
    # Near the bound the steps vanish, and so does multiplicative noise; additive noise does not.
    near = _one_update("multiplicative", 0.999, 4)
    assert near.std() < 0.3 * 4 * step * 0.002
    assert _one_update("additive", 0.5, 4).std() > 100 * near.std()


def test_shared_step_spread_keeps_up_and_down_steps_together() -> None:
    def correlation(up_down: float | None) -> float:
        cfg = PRESETS["soft_bounds"].with_overrides(d2d={"up_down_sigma": up_down})
        array = SimulatedCrossbar(50, 50, preset=cfg, seed=1, initial="mid", c2c={"sigma": 0})
        up = array._dev.lam_set.astype(np.float64)
        down = array._dev.lam_reset.astype(np.float64)
        return float(np.corrcoef(up, down)[0, 1])

    assert correlation(0.01) > 0.99  # aihwkit: one dw_min factor, 1 % up/down asymmetry
    assert abs(correlation(None)) < 0.1  # independent draws per direction


def test_up_down_sigma_is_refused_for_models_it_does_not_apply_to() -> None:
    with pytest.raises(ValueError, match="soft-bounds model only"):
        PRESETS["epiram"].with_overrides(d2d={"up_down_sigma": 0.01})


def test_unknown_names_and_missing_preset_files_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="unknown device preset 'nope'"):
        get_preset("nope")
    with pytest.raises(InputError, match=r"mine\.yaml: no such file"):
        get_preset(str(tmp_path / "mine.yaml"))


def test_the_protocol_library_is_what_its_generator_makes_of_the_presets() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "sim_backend.protocol_library", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("0 of 8 protocol files differ")
