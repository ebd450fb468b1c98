"""Every command string of the VISA station, written once for its driver and its emulator.

The station is a Keysight B2900-style source-measure unit in pulse mode (channel 1) and a
Keithley 707B-style switch matrix that connects one crossbar row and one column at a time.
The driver builds messages with the functions here; the emulator recognises the same
headers and patterns. Several SCPI commands may share one line separated by ``;`` (one
program message, executed in order, so a pulse train and its `*OPC?` cost one round trip).

docs/instruments.md §8 lists, for every string, the manual page it was checked against or
that it is still unconfirmed; check the unconfirmed ones before driving a real instrument.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# -- common IEEE 488.2 --------------------------------------------------------------------
IDN = "*IDN?"
OPC = "*OPC?"
CLS = "*CLS"
RST = "*RST"

# -- SMU (B2900 style) headers ----------------------------------------------------------------
SOUR_FUNC_MODE = ":SOUR:FUNC:MODE"  # VOLT
SOUR_FUNC_SHAP = ":SOUR:FUNC:SHAP"  # PULS | DC
SOUR_VOLT = ":SOUR:VOLT"  # base level (pulse mode) or DC level (read)
SOUR_VOLT_TRIG = ":SOUR:VOLT:TRIG"  # pulse peak
SOUR_PULS_WIDT = ":SOUR:PULS:WIDT"
SOUR_PULS_DEL = ":SOUR:PULS:DEL"
SENS_CURR_PROT = ":SENS:CURR:PROT"  # current compliance
TRIG_SOUR = ":TRIG:SOUR"  # TIM
TRIG_TIM = ":TRIG:TIM"  # pulse period
TRIG_COUN = ":TRIG:COUN"  # pulses per train
TRAC_CLE = ":TRAC:CLE"  # clear the reading buffer (starts a new pulse-count epoch); NEV only
TRAC_FEED_CONT = ":TRAC:FEED:CONT"  # NEXT: store one reading per pulse; NEV: stop storing
TRAC_POIN_ACT = ":TRAC:POIN:ACT?"  # readings stored since the last clear = pulses delivered
INIT = ":INIT"
OUTP = ":OUTP"
#: State queries a lab sends after a run (B2900 SCPI reference, OUTPut and SOURce subsystems):
#: output state as NR1 0|1, source level as NR3.
OUTP_QUERIES = (":OUTP?", ":OUTP:STAT?")
SOUR_VOLT_QUERY = ":SOUR:VOLT?"
MEAS_CURR = ":MEAS:CURR?"
SYST_ERR = ":SYST:ERR?"
CHANNEL_LIST = "(@1)"

SHAPE_PULSE = "PULS"
SHAPE_DC = "DC"
NO_ERROR = '+0,"No error"'

#: B2900 limits (sources in docs/instruments.md §8); the emulator enforces the same.
SMU_MAX_ABS_V = 21.0  # this station's cap (the 20 V range), not the instrument's maximum
SMU_MIN_WIDTH_S = 50e-6  # pulse width 50 us .. 99 999.9 s
SMU_MAX_WIDTH_S = 99_999.9
SMU_MIN_COMPLIANCE_A = 1e-9
SMU_MAX_COMPLIANCE_A = 1.5
SMU_TRACE_CAPACITY = 100_000
SMU_ERROR_QUEUE_DEPTH = 32

#: SCPI error numbers used by the station.
ERR_UNDEFINED_HEADER = (-113, "Undefined header")
ERR_DATA_TYPE = (-104, "Data type error")
ERR_SETTINGS_CONFLICT = (-221, "Settings conflict")
ERR_OUT_OF_RANGE = (-222, "Data out of range")
ERR_QUEUE_OVERFLOW = (-350, "Queue overflow")
ERR_INPUT_OVERRUN = (-363, "Input buffer overrun")


def num(x: float) -> str:
    """A float on the wire: the shortest text that parses back to the same double."""
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"cannot send a non-finite number {value!r}")
    return repr(value)


def join(*units: str) -> str:
    """One program message of several commands."""
    return ";".join(units)


def set_cmd(header: str, value: str | float | int) -> str:
    text = (
        value if isinstance(value, str) else (str(value) if isinstance(value, int) else num(value))
    )
    return f"{header} {text}"


def smu_setup(compliance_a: float, period_s: float) -> str:
    """Pulse mode, 0 V base, compliance, timer-paced trains, output on (one message)."""
    return join(
        CLS,
        set_cmd(SOUR_FUNC_MODE, "VOLT"),
        set_cmd(SOUR_FUNC_SHAP, SHAPE_PULSE),
        set_cmd(SOUR_VOLT, 0.0),
        set_cmd(SOUR_PULS_DEL, 0.0),
        set_cmd(SENS_CURR_PROT, compliance_a),
        set_cmd(TRIG_SOUR, "TIM"),
        set_cmd(TRIG_TIM, period_s),
        set_cmd(OUTP, "ON"),
        OPC,
    )


def smu_epoch() -> str:
    """Start a pulse-count epoch: clear the reading buffer, store one reading per pulse.

    The B2900 accepts `:TRAC:CLE` only while the buffer's control mode is NEV, so writing
    is stopped first.
    """
    return join(set_cmd(TRAC_FEED_CONT, "NEV"), TRAC_CLE, set_cmd(TRAC_FEED_CONT, "NEXT"), OPC)


def smu_train(
    count: int,
    amplitude_v: float | None,
    width_s: float | None,
    period_s: float | None,
) -> str:
    """One pulse train on the connected device; the shape is resent only when it changed."""
    units: list[str] = [set_cmd(SOUR_FUNC_SHAP, SHAPE_PULSE)]
    if amplitude_v is not None:
        units.append(set_cmd(SOUR_VOLT_TRIG, amplitude_v))
    if period_s is not None:
        units.append(set_cmd(TRIG_TIM, period_s))
    if width_s is not None:
        units.append(set_cmd(SOUR_PULS_WIDT, width_s))
    units += [set_cmd(TRIG_COUN, int(count)), f"{INIT} {CHANNEL_LIST}", OPC]
    return join(*units)


def smu_read(read_v: float) -> str:
    """A DC spot measurement of the current at `read_v` on the connected device."""
    return join(
        set_cmd(SOUR_FUNC_SHAP, SHAPE_DC), set_cmd(SOUR_VOLT, read_v), f"{MEAS_CURR} {CHANNEL_LIST}"
    )


def smu_after_read() -> str:
    return join(set_cmd(SOUR_VOLT, 0.0), set_cmd(SOUR_FUNC_SHAP, SHAPE_PULSE), OPC)


def smu_shutdown() -> str:
    return join(set_cmd(SOUR_VOLT, 0.0), set_cmd(OUTP, "OFF"), OPC)


def smu_count() -> str:
    return TRAC_POIN_ACT


_ERR_RE = re.compile(r'^([+-]?\d+),"([^"]*)"$')


def parse_error(reply: str) -> tuple[int, str]:
    """`+0,"No error"` -> (0, 'No error'); raises ValueError on anything else."""
    m = _ERR_RE.match(reply.strip())
    if not m:
        raise ValueError(f"not an error-queue reply: {reply!r}")
    return int(m.group(1)), m.group(2)


def format_error(code: int, message: str) -> str:
    return f'{code:+d},"{message}"'


_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_int(reply: str) -> int:
    if not _INT_RE.match(reply.strip()):
        raise ValueError(f"not an integer: {reply!r}")
    return int(reply)


def parse_float(reply: str) -> float:
    if not _FLOAT_RE.match(reply.strip()):
        raise ValueError(f"not a number: {reply!r}")
    return float(reply)


# -- switch matrix (707B style, TSP) -----------------------------------------------------
MATRIX_ROW_SOURCE = "A"  # SMU force (HI) on matrix row A
MATRIX_ROW_GROUND = "B"  # SMU LO / ground on matrix row B
MATRIX_COLUMNS_PER_SLOT = 12
MATRIX_SLOTS = 6
MATRIX_OPEN_ALL = 'channel.open("allslots")'
MATRIX_GETCLOSE = 'print(channel.getclose("allslots"))'
MATRIX_ERR_COUNT = "print(errorqueue.count)"
MATRIX_ERR_NEXT = "print(errorqueue.next())"
MATRIX_ERR_CLEAR = "errorqueue.clear()"
MATRIX_NOTHING_CLOSED = "nil"

_CHANNEL_RE = re.compile(r"^([1-9])([A-H])(\d\d)$")
EXCLUSIVECLOSE_RE = re.compile(r'^channel\.exclusiveclose\("([^"]*)"\)$')
OPEN_RE = re.compile(r'^channel\.open\("([^"]*)"\)$')


@dataclass(frozen=True)
class MatrixMap:
    """Crossbar lines on matrix columns: word line r -> line r, bit line c -> rows + c."""

    rows: int
    cols: int
    columns_per_slot: int = MATRIX_COLUMNS_PER_SLOT
    slots: int = MATRIX_SLOTS

    @property
    def lines(self) -> int:
        return self.rows + self.cols

    def fits(self) -> bool:
        return self.lines <= self.columns_per_slot * self.slots

    def channel(self, matrix_row: str, line: int) -> str:
        slot, col = divmod(line, self.columns_per_slot)
        return f"{slot + 1}{matrix_row}{col + 1:02d}"

    def device(self, row: int, col: int) -> str:
        """The two crosspoints that put the SMU across device (row, col)."""
        return (
            f"{self.channel(MATRIX_ROW_SOURCE, row)},"
            f"{self.channel(MATRIX_ROW_GROUND, self.rows + col)}"
        )

    def line_of(self, channel: str) -> tuple[str, int]:
        """'1A05' -> ('A', 4); raises ValueError for a malformed or absent channel."""
        m = _CHANNEL_RE.match(channel.strip())
        if not m:
            raise ValueError(f"malformed channel {channel!r}")
        slot, row, col = int(m.group(1)), m.group(2), int(m.group(3))
        if not 1 <= slot <= self.slots or not 1 <= col <= self.columns_per_slot:
            raise ValueError(f"channel {channel!r} does not exist")
        return row, (slot - 1) * self.columns_per_slot + col - 1


def matrix_connect(mapping: MatrixMap, row: int, col: int) -> list[str]:
    """Connect device (row, col) and only it, then wait for the relays (TSP lines)."""
    return [f'channel.exclusiveclose("{mapping.device(row, col)}")', OPC]


def matrix_release() -> list[str]:
    return [MATRIX_OPEN_ALL, OPC]


def matrix_error_reply(code: int, message: str) -> str:
    """The tab-separated reply of `print(errorqueue.next())`: code, message, severity, node."""
    return f"{code}\t{message}\t0\t1"


def parse_matrix_error(reply: str) -> tuple[int, str]:
    parts = reply.split("\t")
    if len(parts) != 4 or not _INT_RE.match(parts[0]):
        raise ValueError(f"not an errorqueue.next() reply: {reply!r}")
    return int(parts[0]), parts[1]


MATRIX_QUEUE_EMPTY = (0, "Queue Is Empty")
MATRIX_ERR_SYNTAX = (-285, "TSP Syntax error")
MATRIX_ERR_CHANNEL = (1115, "Parameter error invalid channel list")
