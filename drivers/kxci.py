"""Every command string of the Keithley 4200A-SCS (KXCI) as a pulse source, written once.

The 4200A is the station's second pulse source: channel 1 of a 4225-PMU (through a
4225-RPM) fires the programming pulses on matrix row A with the native `:PMU:` commands,
and SMU1 (user-mode `DV`/`TI` commands) makes the reads on matrix row C, so that a read has
a real current compliance and reports when it hits it. Over the LAN, KXCI listens on TCP
port 1225 and every message, in both directions, ends with a NUL byte; every command is
answered (`ACK` for a setting). One command per message: nothing in the sources shows KXCI
accepting several.

docs/instruments.md §8 names the source of every string and figure here.
"""

from __future__ import annotations

import re

from drivers.scpi import num, round_up

#: Message terminator over the LAN (both directions), and the port KXCI listens on.
LAN_TERMINATION = "\0"
LAN_PORT = 1225
ACK = "ACK"

# -- identity and status ------------------------------------------------------------------
ID = "ID"  # -> 'KI4200A V1.13'
OPT = "*OPT?"  # -> 'SMU1,SMU2,PMU1,...'
SP = "SP"  # status byte
SP_DATA_READY = 1
SP_SYNTAX_ERROR = 2
SP_BUSY = 16
ID_RE = re.compile(r"^KI4200", re.IGNORECASE)

# -- 4225-PMU, channel 1 ------------------------------------------------------------------
PMU_CHANNEL = 1
PMU_INIT = ":PMU:INIT"  # 0: standard pulse
PMU_RPM = ":PMU:RPM:CONFIGURE"  # PMU1-1, 0: the RPM passes the PMU
PMU_LOAD = ":PMU:LOAD"  # ch, ohms: the DUT resistance the PMU sizes its output for
PMU_MEAS_MODE = ":PMU:MEASURE:MODE"  # 3: spot mean
PMU_MEAS_RANGE = ":PMU:MEASURE:RANGE"  # ch, 2 (fixed), amps
PMU_TRAIN = ":PMU:PULSE:TRAIN"  # ch, base V, amplitude V
PMU_TIMES = ":PMU:PULSE:TIMES"  # ch, period, width, rise, fall
PMU_BURST = ":PMU:PULSE:BURST:COUNT"  # pulses per execution
PMU_OUTPUT = ":PMU:OUTPUT:STATE"  # ch, 0|1
PMU_EXECUTE = ":PMU:EXECUTE"
PMU_STATUS = ":PMU:TEST:STATUS?"  # 1 running, 0 idle

#: 4225-PMU figures the driver relies on (10 V range, with a 4225-RPM).
PMU_MAX_ABS_V = 10.0
PMU_MIN_WIDTH_S = 60e-9
PMU_MAX_PERIOD_S = 1.0
PMU_MIN_PERIOD_S = 120e-9
PMU_EDGE_S = 20e-9  # rise and fall time the driver programs (the shortest allowed)
PMU_MAX_BURST = 10_000  # pulses per execution the driver sends (longer trains are split)
PMU_LOAD_OHM = 1e6  # high-impedance DUT: the device never sees more than the programmed V
PMU_CURRENT_RANGES_A = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)  # with a 4225-RPM
#: Error codes the PMU answers with (a bare negative number instead of ACK).
ERR_ILLEGAL_PARAMETER = -122
ERR_PULSE_TIMING = -824
ERROR_NAMES = {
    ERR_ILLEGAL_PARAMETER: "illegal parameter",
    ERR_PULSE_TIMING: "invalid pulse timing",
}

# -- SMU (user mode) ----------------------------------------------------------------------
SMU_CHANNEL = 1
SMU_VOLTAGE_RANGE = 1  # DV range code 1: the 20 V range
SMU_MIN_COMPLIANCE_A = 1e-9
SMU_MAX_COMPLIANCE_A = 0.1
#: A reading of more than this is the instrument's overflow value, never a measurement.
OVERFLOW = 1e37
#: Status letter of a `TI` reading, and what it means.
READING_STATUS = {
    "N": "normal",
    "L": "interval too short",
    "V": "overflow (A/D converter saturated)",
    "X": "oscillation",
    "C": "this channel in compliance",
    "T": "another channel in compliance",
}
_READING_RE = re.compile(r"^([NLVXCT])([A-F])([IV])\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)$")


def pmu_period(width_s: float) -> float:
    """Pulse period for a width: twice the pulse with both edges, at least the PMU's minimum."""
    return round_up(max(PMU_MIN_PERIOD_S, 2.0 * (width_s + 2.0 * PMU_EDGE_S)))


def pmu_range(compliance_a: float) -> float:
    """The smallest fixed PMU current range that holds the compliance current."""
    for r in PMU_CURRENT_RANGES_A:
        if r >= compliance_a:
            return r
    return PMU_CURRENT_RANGES_A[-1]


def pmu_setup(compliance_a: float) -> list[str]:
    """Standard pulse mode through the RPM, high-impedance load, spot-mean measurement on a
    fixed range, 0 V, output still off: one command per message."""
    ch = PMU_CHANNEL
    return [
        f"{PMU_INIT} 0",
        f"{PMU_RPM} PMU1-{ch}, 0",
        f"{PMU_LOAD} {ch}, {num(PMU_LOAD_OHM)}",
        f"{PMU_MEAS_MODE} 3",
        f"{PMU_MEAS_RANGE} {ch}, 2, {num(pmu_range(compliance_a))}",
        pmu_train(0.0),
        pmu_times(PMU_MIN_WIDTH_S),
        f"{PMU_OUTPUT} {ch}, 0",
    ]


def pmu_train(amplitude_v: float) -> str:
    return f"{PMU_TRAIN} {PMU_CHANNEL}, 0.0, {num(amplitude_v)}"


def pmu_times(width_s: float) -> str:
    e = num(PMU_EDGE_S)
    return f"{PMU_TIMES} {PMU_CHANNEL}, {num(pmu_period(width_s))}, {num(width_s)}, {e}, {e}"


def pmu_burst(count: int) -> str:
    return f"{PMU_BURST} {int(count)}"


def pmu_output(on: bool) -> str:
    return f"{PMU_OUTPUT} {PMU_CHANNEL}, {int(on)}"


def smu_force(volts: float, compliance_a: float) -> str:
    """SMU1 sources `volts` on the 20 V range with current compliance (user mode)."""
    return f"US;DV{SMU_CHANNEL},{SMU_VOLTAGE_RANGE},{num(volts)},{num(compliance_a)}"


def smu_measure() -> str:
    """The current SMU1 measures: 'NAI1.25e-06' (status, channel, I, value)."""
    return f"US;TI{SMU_CHANNEL}"


def smu_off() -> str:
    return f"US;DV{SMU_CHANNEL}"


def format_reading(status: str, channel: str, value: float) -> str:
    return f"{status}{channel}I{num(value)}"


def parse_reading(reply: str) -> tuple[str, float]:
    """'NAI1.25e-06' -> ('N', 1.25e-06); raises ValueError on anything else."""
    m = _READING_RE.match(reply.strip())
    if not m or m.group(3) != "I":
        raise ValueError(f"not a current reading: {reply!r}")
    return m.group(1), float(m.group(4))


def parse_error_code(reply: str) -> int | None:
    """The error number of a reply that is a bare negative integer (-100 or below)."""
    text = reply.strip()
    if re.fullmatch(r"-\d{3,4}", text):
        return int(text)
    return None


def options_have_pmu(reply: str) -> bool:
    return any("PMU" in token.upper() for token in reply.split(","))
