"""Device presets from the literature. docs/devices.md gives each value's source and status.

The NeuroSim-curve presets share NeuroSim's default write voltage (2 V; NeuroSim source,
Cell.cpp) as their nominal amplitude: the curve is defined per nominal pulse, so the amplitude
only sets the energy estimate and the scale of the threshold law. Where a device file gives
other pulses, `uncertain` says so. Values listed in `uncertain` were not checked against the
original paper or are choices.
"""

from __future__ import annotations

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


def _pulses(v_set: float, v_reset: float, width_s: float) -> dict[str, PulseShape]:
    return {
        "set_pulse": PulseShape(amplitude_v=v_set, width_s=width_s),
        "reset_pulse": PulseShape(amplitude_v=v_reset, width_s=width_s),
    }


#: Threshold law shared by the NeuroSim-curve presets: 2 V nominal, 1.2 V threshold, so V/2
#: (1 V) and V/3 half-selects are below threshold. An assumption, not a measured value.
_LAW_2V = PulseLaw(kind="threshold", v_threshold_set_v=1.2, v_threshold_reset_v=1.2, gamma=1.0)

_NEUROSIM = "Chen, Peng & Yu, IEEE TCAD 37(12):3067, 2018, Table I"

PRESETS: dict[str, DeviceConfig] = {
    "ideal": DeviceConfig(
        name="ideal",
        description="linear, symmetric, noiseless: the unit-test baseline",
        source="idealised device (NeuroSim-style NL = 0); 1000 states, 1-100 uS",
        model=NeuroSimModel(
            g_min_s=1e-6, g_max_s=100e-6, states_ltp=1000, states_ltd=1000, nl_ltp=0.0, nl_ltd=0.0
        ),
        **_pulses(2.0, -2.0, 10e-9),
        law=_LAW_2V,
    ),
    "ag_asi": DeviceConfig(
        name="ag_asi",
        description="Ag:a-Si (Jo et al., Nano Lett. 10:1297, 2010): strongly nonlinear",
        source=(
            f"{_NEUROSIM}; states 97/100, NL, C2C, 3.08-38.5 nS and 300 us as in the MELISO+ "
            "device file device_Ag-aSi.yaml"
        ),
        uncertain=(
            "values not checked against Jo et al. 2010 itself",
            "amplitude: NeuroSim's default 2 V; the MELISO+ file has +3.2 V / -2.8 V",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=3.08e-9,
            g_max_s=38.5e-9,
            states_ltp=97,
            states_ltd=100,
            nl_ltp=2.4,
            nl_ltd=-4.88,
        ),
        **_pulses(2.0, -2.0, 300e-6),
        law=_LAW_2V,
        d2d=DeviceToDevice(nl_sigma=0.5),
        c2c=CycleToCycle(sigma=0.035),
    ),
    "taox_hfox": DeviceConfig(
        name="taox_hfox",
        description="TaOx/HfOx (Wu et al., VLSI 2017): nearly linear LTP, 128 states",
        source="MELISO+ device file device_TaOx-HfOx.yaml (states, NL, C2C, 1-10 uS, 50 ns)",
        uncertain=(
            "attribution to Wu et al. VLSI 2017 (the device file names no paper)",
            "amplitude: NeuroSim's default 2 V; the MELISO+ file has 1.6 V",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=1e-6, g_max_s=10e-6, states_ltp=128, states_ltd=128, nl_ltp=0.04, nl_ltd=-0.63
        ),
        **_pulses(2.0, -2.0, 50e-9),
        law=_LAW_2V,
        d2d=DeviceToDevice(nl_sigma=0.5, g_min_rel_sigma=0.1, g_max_rel_sigma=0.1),
        c2c=CycleToCycle(sigma=0.037),
    ),
    "alox_hfo2": DeviceConfig(
        name="alox_hfo2",
        description="AlOx/HfO2 (Woo et al., IEEE EDL 37(8), 2016): 40 states, ON/OFF 4.4",
        source=(
            f"{_NEUROSIM}; states, NL, C2C and 13.36-59.17 uS as in the MELISO+ device file "
            "device_AlOx-HfO2.yaml"
        ),
        uncertain=(
            "values not checked against Woo et al. 2016 itself",
            "pulses: NeuroSim's default 2 V, 100 ns; the MELISO+ file has +0.9 V / -1 V, 100 us",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=13.36e-6,
            g_max_s=59.17e-6,
            states_ltp=40,
            states_ltd=40,
            nl_ltp=1.94,
            nl_ltd=-0.61,
        ),
        **_pulses(2.0, -2.0, 100e-9),
        law=_LAW_2V,
        d2d=DeviceToDevice(nl_sigma=0.5, g_min_rel_sigma=0.1, g_max_rel_sigma=0.1),
        c2c=CycleToCycle(sigma=0.05),
    ),
    "pcmo": DeviceConfig(
        name="pcmo",
        description="PCMO (Park et al., IEDM 2013): 50 states, very nonlinear LTD",
        source=f"{_NEUROSIM} (states, NL, R_on 23 MOhm, ON/OFF 6.84, C2C < 1 %)",
        uncertain=(
            "C2C taken as 0.5 % (the table says < 1 %)",
            "pulses: NeuroSim's default 2 V, 100 ns",
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
        law=_LAW_2V,
        d2d=DeviceToDevice(nl_sigma=0.5),
        c2c=CycleToCycle(sigma=0.005),
    ),
    "epiram": DeviceConfig(
        name="epiram",
        description="EpiRAM Ag:SiGe (Choi et al., Nat. Mater., 2018): a good analog device",
        source="MELISO+ device file device_EpiRAM.yaml (NL 0.5/-0.5, C2C 2 %, 0.246-12.3 uS)",
        uncertain=(
            "state count: 64 here, 256 in the MELISO+ file",
            "pulses: NeuroSim's default 2 V, 100 ns; the MELISO+ file has +5 V / -3 V, 5 us",
            "D2D sigmas (chosen)",
        ),
        model=NeuroSimModel(
            g_min_s=0.246e-6, g_max_s=12.3e-6, states_ltp=64, states_ltd=64, nl_ltp=0.5, nl_ltd=-0.5
        ),
        **_pulses(2.0, -2.0, 100e-9),
        law=_LAW_2V,
        d2d=DeviceToDevice(nl_sigma=0.25),
        c2c=CycleToCycle(sigma=0.02),
    ),
    "soft_bounds": DeviceConfig(
        name="soft_bounds",
        description="soft-bounds device in the manner of Gokmen & Vlasov's RPU (~1200 states)",
        source="aihwkit GokmenVlasov preset (dw_min 0.0016 of a [-1, 1] range, 30 % d2d/c2c)",
        uncertain=("conductance window 1-10 uS (the source works in weight units)",),
        model=SoftBoundsModel(g_min_s=1e-6, g_max_s=10e-6, step_up=0.0016, step_down=0.0016),
        **_pulses(2.0, -2.0, 1e-9),
        law=_LAW_2V,
        d2d=DeviceToDevice(states_rel_sigma=0.3),
        c2c=CycleToCycle(sigma=0.3 * 0.0008),
    ),
    "vteam": DeviceConfig(
        name="vteam",
        description="physical VTEAM-type threshold model with a linear R(w), ON/OFF 10",
        source="Kvatinsky et al., IEEE TCAS-II 62(8):786, 2015 (model form); parameters chosen",
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


def get_preset(name: str) -> DeviceConfig:
    """The preset called `name`; an InputError lists the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        shown = " ".join(repr(name).split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InputError(f"unknown device preset {shown}; known presets: {known}") from None
