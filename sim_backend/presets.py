"""Device presets from the literature, each number with its source (docs/devices.md).

Every preset names its nominal SET and RESET pulses as its cited source gives them, so pulse
energies (V^2 G t) and half-select disturb follow the device, not a common default. `sources`
says where each group of numbers comes from; `uncertain` lists what was not checked against
the original paper or is a modelling choice.

Switching thresholds: none of the cited sources states one. Their device files model a 1T1R
array (NeuroSim's `cmosAccess = true`), where no cell is ever half-selected. For a passive
array the presets put the threshold at 0.75 x the nominal amplitude (`THRESHOLD_FRACTION`,
chosen): inside (V/2, V), the window in which a V/2 write scheme works, as NeuroSim's own
cross-point mode assumes (it leaves half-selected cells unchanged and only counts their
energy). A researcher who knows the device's threshold overrides `law`.
"""

from __future__ import annotations

from pathlib import Path

from protocols.errors import InputError
from protocols.plan import PulseShape
from sim_backend.config import (
    CycleToCycle,
    DeviceConfig,
    DeviceToDevice,
    NeuroSimModel,
    PulseLaw,
    SoftBoundsModel,
    VteamModel,
)

#: Threshold of the NeuroSim-curve and soft-bounds presets, as a fraction of |V_nominal|.
THRESHOLD_FRACTION = 0.75

_NEUROSIM = "NeuroSim MLP_NeuroSim_V3.0 Cell.cpp"
_MELISO = "MELISO+ device file config_files/{} (disys-lab/meliso)"
_CHOSEN_THRESHOLD = (
    f"chosen: {THRESHOLD_FRACTION} x |nominal amplitude|, inside (V/2, V); the cited source "
    "gives no threshold (1T1R array, no half-select)"
)


def _pulses(v_set: float, v_reset: float, width_s: float) -> dict[str, PulseShape]:
    return {
        "set_pulse": PulseShape(amplitude_v=v_set, width_s=width_s),
        "reset_pulse": PulseShape(amplitude_v=v_reset, width_s=width_s),
    }


def _law(v_set: float, v_reset: float) -> PulseLaw:
    """Hard threshold at THRESHOLD_FRACTION of each nominal amplitude, gamma 1 (chosen)."""
    return PulseLaw(
        kind="threshold",
        v_threshold_set_v=round(THRESHOLD_FRACTION * abs(v_set), 6),
        v_threshold_reset_v=round(THRESHOLD_FRACTION * abs(v_reset), 6),
        gamma=1.0,
    )


_AG = _MELISO.format("device_Ag-aSi.yaml")
_ALOX = _MELISO.format("device_AlOx-HfO2.yaml")
_TAOX = _MELISO.format("device_TaOx-HfOx.yaml")
_EPI = _MELISO.format("device_EpiRAM.yaml")
_AIHWKIT_SB = "aihwkit ReRamSBPresetDevice (src/aihwkit/simulator/presets/devices.py)"

PRESETS: dict[str, DeviceConfig] = {
    "ideal": DeviceConfig(
        name="ideal",
        description="linear, symmetric, noiseless: the unit-test baseline",
        source="idealised device (NeuroSim-style NL = 0); 1000 states, 1-100 uS",
        sources={
            "g_window": "chosen (1-100 uS)",
            "states": "chosen (1000 per direction)",
            "nl": "chosen (0: linear)",
            "set_pulse": f"+2 V, 10 ns: {_NEUROSIM}, IdealDevice",
            "reset_pulse": f"-2 V, 10 ns: {_NEUROSIM}, IdealDevice (writeVoltageLTD 2 V)",
            "thresholds": "chosen: 1.2 V (0.6 x 2 V), the idealised baseline's threshold as "
            "it always was, so its behaviour under ISPP and half-select stays the same",
            "c2c": "chosen (none)",
            "d2d": "chosen (none)",
        },
        uncertain=("window and state count are chosen, not NeuroSim's IdealDevice (0.1-5 uS, 64)",),
        model=NeuroSimModel(
            g_min_s=1e-6, g_max_s=100e-6, states_ltp=1000, states_ltd=1000, nl_ltp=0.0, nl_ltd=0.0
        ),
        **_pulses(2.0, -2.0, 10e-9),
        law=PulseLaw(kind="threshold", v_threshold_set_v=1.2, v_threshold_reset_v=1.2, gamma=1.0),
    ),
    "ag_asi": DeviceConfig(
        name="ag_asi",
        description="Ag:a-Si (Jo et al., Nano Lett. 10:1297, 2010): strongly nonlinear",
        source=f"NeuroSim's real device ({_NEUROSIM}, RealDevice) and {_AG}",
        sources={
            "g_window": f"3.0769-38.462 nS: {_NEUROSIM} RealDevice; {_AG}",
            "states": f"97 LTP / 100 LTD: {_NEUROSIM} RealDevice; {_AG}",
            "nl": f"2.4 / -4.88: {_NEUROSIM} RealDevice; {_AG}",
            "set_pulse": f"+3.2 V, 300 us: {_NEUROSIM} RealDevice; {_AG}",
            "reset_pulse": f"-2.8 V, 300 us: {_NEUROSIM} RealDevice (2.8 V magnitude); {_AG}",
            "thresholds": _CHOSEN_THRESHOLD,
            "c2c": f"3.5 % of the window: {_NEUROSIM} RealDevice (sigmaCtoC); {_AG}",
            "d2d": "chosen (NL sigma 0.5)",
        },
        uncertain=(
            "values not checked against Jo et al. 2010 itself",
            "thresholds (chosen)",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=3.0769e-9,
            g_max_s=3.8462e-8,
            states_ltp=97,
            states_ltd=100,
            nl_ltp=2.4,
            nl_ltd=-4.88,
        ),
        **_pulses(3.2, -2.8, 300e-6),
        law=_law(3.2, -2.8),
        d2d=DeviceToDevice(nl_sigma=0.5),
        c2c=CycleToCycle(sigma=0.035),
    ),
    "taox_hfox": DeviceConfig(
        name="taox_hfox",
        description="TaOx/HfOx (Wu et al., VLSI 2017): nearly linear LTP, 128 states",
        source=_TAOX,
        sources={
            "g_window": f"1-10 uS: {_TAOX}",
            "states": f"128 / 128: {_TAOX}",
            "nl": f"0.04 / -0.63: {_TAOX}",
            "set_pulse": f"+1.6 V, 50 ns: {_TAOX}",
            "reset_pulse": f"-1.6 V, 50 ns: {_TAOX} (writeVoltageLTD 1.6 V, a magnitude)",
            "thresholds": _CHOSEN_THRESHOLD,
            "c2c": f"3.7 % of the window: {_TAOX}",
            "d2d": "chosen (NL sigma 0.5, window 10 %)",
        },
        uncertain=(
            "attribution to Wu et al. VLSI 2017 (the device file names no paper)",
            "thresholds (chosen)",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=1e-6, g_max_s=10e-6, states_ltp=128, states_ltd=128, nl_ltp=0.04, nl_ltd=-0.63
        ),
        **_pulses(1.6, -1.6, 50e-9),
        law=_law(1.6, -1.6),
        d2d=DeviceToDevice(nl_sigma=0.5, g_min_rel_sigma=0.1, g_max_rel_sigma=0.1),
        c2c=CycleToCycle(sigma=0.037),
    ),
    "alox_hfo2": DeviceConfig(
        name="alox_hfo2",
        description="AlOx/HfO2 (Woo et al., IEEE EDL 37(8), 2016): 40 states, ON/OFF 4.4",
        source=_ALOX,
        sources={
            "g_window": f"13.357-59.172 uS: {_ALOX}",
            "states": f"40 / 40: {_ALOX}",
            "nl": f"1.94 / -0.61: {_ALOX}",
            "set_pulse": f"+0.9 V, 100 us: {_ALOX}",
            "reset_pulse": f"-1 V, 100 us: {_ALOX}",
            "thresholds": _CHOSEN_THRESHOLD,
            "c2c": f"5 % of the window: {_ALOX}",
            "d2d": "chosen (NL sigma 0.5, window 10 %)",
        },
        uncertain=(
            "values not checked against Woo et al. 2016 itself",
            "thresholds (chosen)",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=1.3357e-5,
            g_max_s=5.9172e-5,
            states_ltp=40,
            states_ltd=40,
            nl_ltp=1.94,
            nl_ltd=-0.61,
        ),
        **_pulses(0.9, -1.0, 100e-6),
        law=_law(0.9, -1.0),
        d2d=DeviceToDevice(nl_sigma=0.5, g_min_rel_sigma=0.1, g_max_rel_sigma=0.1),
        c2c=CycleToCycle(sigma=0.05),
    ),
    "pcmo": DeviceConfig(
        name="pcmo",
        description="PCMO (Park et al., IEDM 2013): 50 states, very nonlinear LTD",
        source="Chen, Peng & Yu, IEEE TCAD 37(12):3067, 2018, Table I (as in the project notes)",
        sources={
            "g_window": "R_on 23 MOhm, ON/OFF 6.84: NeuroSim TCAD 2018 Table I (unchecked)",
            "states": "50 / 50: NeuroSim TCAD 2018 Table I (unchecked)",
            "nl": "3.68 / -6.76: NeuroSim TCAD 2018 Table I (unchecked)",
            "set_pulse": f"+2 V, 100 ns: none in the sources; {_NEUROSIM} MeasuredDevice default",
            "reset_pulse": f"-2 V, 100 ns: none in the sources; {_NEUROSIM} MeasuredDevice default",
            "thresholds": _CHOSEN_THRESHOLD,
            "c2c": "0.5 %: chosen inside the table's '< 1 %'",
            "d2d": "chosen (NL sigma 0.5)",
        },
        uncertain=(
            "every value from the project's notes of NeuroSim TCAD 2018 Table I (unchecked)",
            "C2C taken as 0.5 % (the table says < 1 %)",
            "pulses: no source; NeuroSim's measured-device default 2 V, 100 ns",
            "thresholds (chosen)",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=1.0 / 23e6 / 6.84,
            g_max_s=1.0 / 23e6,
            states_ltp=50,
            states_ltd=50,
            nl_ltp=3.68,
            nl_ltd=-6.76,
        ),
        **_pulses(2.0, -2.0, 100e-9),
        law=_law(2.0, -2.0),
        d2d=DeviceToDevice(nl_sigma=0.5),
        c2c=CycleToCycle(sigma=0.005),
    ),
    "epiram": DeviceConfig(
        name="epiram",
        description="EpiRAM Ag:SiGe (Choi et al., Nat. Mater. 17:335, 2018): a good analog device",
        source=_EPI,
        sources={
            "g_window": f"0.24593-12.346 uS: {_EPI}",
            "states": f"256 / 256: {_EPI}",
            "nl": f"0.5 / -0.5: {_EPI}",
            "set_pulse": f"+5 V, 5 us: {_EPI}",
            "reset_pulse": f"-3 V, 5 us: {_EPI}",
            "thresholds": _CHOSEN_THRESHOLD,
            "c2c": f"2 % of the window: {_EPI}",
            "d2d": "chosen (NL sigma 0.25)",
        },
        uncertain=(
            "values not checked against Choi et al. 2018 itself",
            "thresholds (chosen)",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=2.4592986e-7,
            g_max_s=1.2345679e-5,
            states_ltp=256,
            states_ltd=256,
            nl_ltp=0.5,
            nl_ltd=-0.5,
        ),
        **_pulses(5.0, -3.0, 5e-6),
        law=_law(5.0, -3.0),
        d2d=DeviceToDevice(nl_sigma=0.25),
        c2c=CycleToCycle(sigma=0.02),
    ),
    "soft_bounds": DeviceConfig(
        name="soft_bounds",
        description="ReRAM with soft bounds (aihwkit's loose fit to Gong et al., Nat. Commun. "
        "9:2102, 2018)",
        source=_AIHWKIT_SB,
        sources={
            "g_window": "chosen (1-10 uS): the source works in weight units [-0.75, 1.25]",
            "states": f"steps 0.0016 up at G_min, 0.00267 down at G_max (dw_min 0.002 over "
            f"w in [-0.75, 1.25]): {_AIHWKIT_SB}",
            "nl": "soft bounds: the step shrinks linearly to zero at each bound",
            "set_pulse": "+2 V, 10 ns: chosen (NeuroSim's default write pulse; the source has "
            "no voltages)",
            "reset_pulse": "-2 V, 10 ns: chosen (as SET)",
            "thresholds": _CHOSEN_THRESHOLD,
            "c2c": f"additive, 3.75 dw_min = 0.375 % of the window per pulse (dw_min_std, "
            f"mult_noise False): {_AIHWKIT_SB}",
            "d2d": f"steps 30 % shared, up/down 1 % (dw_min_dtod, up_down_dtod); G_max 13.5 % "
            f"(w_max_dtod 0.3/1.25 of the range, on G_max only): {_AIHWKIT_SB}",
        },
        uncertain=(
            "conductance window 1-10 uS and the pulses are chosen (the source works in weight "
            "units and gives no voltages)",
            "the source's write noise (write_noise_std 56 dw_min) and w_min spread are not "
            "modelled",
            "not checked against Gong et al. 2018 itself",
        ),
        model=SoftBoundsModel(g_min_s=1e-6, g_max_s=10e-6, step_up=0.0016, step_down=0.002 / 0.75),
        **_pulses(2.0, -2.0, 10e-9),
        law=_law(2.0, -2.0),
        d2d=DeviceToDevice(states_rel_sigma=0.3, up_down_sigma=0.01, g_max_rel_sigma=0.135),
        c2c=CycleToCycle(sigma=3.75 * 0.001, form="additive"),
    ),
    "vteam": DeviceConfig(
        name="vteam",
        description="physical VTEAM-type threshold model with a linear R(w), ON/OFF 10",
        source="Kvatinsky et al., IEEE TCAS-II 62(8):786, 2015 (model form); parameters chosen",
        sources={
            "g_window": "chosen (R_on 10 kOhm, R_off 100 kOhm)",
            "states": "follow from k, alpha and the pulse (chosen)",
            "nl": "follows from the linear R(w) (convex in G)",
            "set_pulse": "+1.6 V, 100 ns: chosen (moves about 1 % of w)",
            "reset_pulse": "-1.6 V, 100 ns: chosen",
            "thresholds": "1 V SET and RESET: chosen VTEAM v_set, v_reset",
            "c2c": "chosen (2 % of w)",
            "d2d": "chosen (k 10 %, v_th 3 %, R 10 %)",
        },
        uncertain=(
            "k, alpha and thresholds are chosen so that a 1.6 V, 100 ns pulse moves about 1 % "
            "of the state (MemTorch's default k values are toy values); not fitted to a device",
            "R_on 10 kOhm and R_off 100 kOhm are chosen, not measured",
        ),
        model=VteamModel(
            r_on_ohm=10e3,
            r_off_ohm=100e3,
            k_set_per_s=5e5,
            k_reset_per_s=7e5,
            v_set_v=1.0,
            v_reset_v=1.0,
            alpha_set=3.0,
            alpha_reset=3.0,
            window="none",
        ),
        **_pulses(1.6, -1.6, 100e-9),
        d2d=DeviceToDevice(
            states_rel_sigma=0.1,
            v_threshold_rel_sigma=0.03,
            g_min_rel_sigma=0.1,
            g_max_rel_sigma=0.1,
        ),
        c2c=CycleToCycle(sigma=0.02),
    ),
}


def is_preset_file(name: str) -> bool:
    """True when `name` names a preset file rather than a built-in preset."""
    return name not in PRESETS and (
        Path(name).suffix.lower() in (".yaml", ".yml", ".json") or "/" in name or "\\" in name
    )


def get_preset(name: str) -> DeviceConfig:
    """The built-in preset called `name`, or the preset file at that path (.yaml/.yml/.json,
    as written by `mrnn-hil devices fit`); an InputError names the problem otherwise."""
    if is_preset_file(name):
        from sim_backend.preset_file import load_preset_file

        return load_preset_file(name)
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        shown = " ".join(repr(name).split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InputError(
            f"unknown device preset {shown}; known presets: {known} (or a preset file path)"
        ) from None
