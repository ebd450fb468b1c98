"""Every command string of the B2900 + 707B station, written once for its driver and emulator.

The station is a Keysight B2900-series source-measure unit in pulse mode (channel 1) and a
Keithley 707B/708B switch matrix that connects one crossbar device at a time. The driver
builds messages with the functions here; the emulator recognises the same headers and
patterns. Several SCPI commands may share one line separated by ``;`` (one program message,
executed in order, so a pulse train and its `*OPC?` cost one round trip). TSP (matrix)
commands go one per line, several lines in one write.

docs/instruments.md §8 gives, for every string, the manual page or public driver it was
checked against, or that it is still unconfirmed.
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

# -- SMU (B2900) headers ------------------------------------------------------------------
SOUR_FUNC_MODE = ":SOUR:FUNC:MODE"  # VOLT
SOUR_VOLT_MODE = ":SOUR:VOLT:MODE"  # FIX (not SWE/LIST, which a previous user may have left)
SOUR_VOLT_RANG = ":SOUR:VOLT:RANG"  # source range, V
SOUR_FUNC_SHAP = ":SOUR:FUNC:SHAP"  # PULS | DC
SOUR_VOLT = ":SOUR:VOLT"  # base level (pulse mode) or DC level (read)
SOUR_VOLT_TRIG = ":SOUR:VOLT:TRIG"  # pulse peak
SOUR_LIST_VOLT = ":SOUR:LIST:VOLT"  # list sweep values (only ever found left over)
SOUR_PULS_WIDT = ":SOUR:PULS:WIDT"
SOUR_PULS_DEL = ":SOUR:PULS:DEL"
SOUR_WAIT_AUTO = ":SOUR:WAIT:AUTO"
SOUR_WAIT_GAIN = ":SOUR:WAIT:GAIN"
SOUR_WAIT_OFFS = ":SOUR:WAIT:OFFS"
SENS_FUNC = ":SENS:FUNC"  # "CURR"
SENS_CURR_RANG_AUTO = ":SENS:CURR:RANG:AUTO"
SENS_CURR_RANG = ":SENS:CURR:RANG"
SENS_CURR_APER = ":SENS:CURR:APER"
SENS_CURR_PROT = ":SENS:CURR:PROT"  # current compliance
SENS_CURR_TRIP = ":SENS:CURR:PROT:TRIP?"  # 1 when the channel is in current compliance
SENS_WAIT_AUTO = ":SENS:WAIT:AUTO"
SENS_WAIT_GAIN = ":SENS:WAIT:GAIN"
SENS_WAIT_OFFS = ":SENS:WAIT:OFFS"
TRIG_SOUR = ":TRIG:ALL:SOUR"  # TIM
TRIG_TIM = ":TRIG:ALL:TIM"  # pulse period
TRIG_COUN = ":TRIG:ALL:COUN"  # pulses per train
TRAC_CLE = ":TRAC:CLE"  # clear the reading buffer (starts a new pulse-count epoch); NEV only
TRAC_FEED_CONT = ":TRAC:FEED:CONT"  # NEXT: store one reading per pulse; NEV: stop storing
TRAC_POIN_ACT = ":TRAC:POIN:ACT?"  # readings stored since the last clear = pulses delivered
IDLE_ALL = ":IDLE1:ALL?"  # 1 once the trigger system (source and measure) is idle
INIT = ":INIT"
ABOR_ALL = ":ABOR:ALL"
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
SMU_MAX_ABS_V = 21.0  # this station's cap (the 20 V source range), not the instrument's maximum
SMU_SOURCE_RANGE_V = 20.0
SMU_MIN_WIDTH_S = 50e-6  # pulse width 50 us .. 99 999.9 s
SMU_MAX_WIDTH_S = 99_999.9
SMU_MIN_COMPLIANCE_A = 1e-9
SMU_MAX_COMPLIANCE_A = 1.5
SMU_TRACE_CAPACITY = 100_000
SMU_ERROR_QUEUE_DEPTH = 32
SMU_MIN_TIMER_S = 1e-5  # trigger timer interval 1e-5 .. 1e5 s
SMU_MAX_TIMER_S = 1e5
#: Fixed current measurement ranges the driver chooses from (smallest >= compliance).
SMU_CURRENT_RANGES_A = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1.5)
#: What the driver sets at start-up, so that the pulse period can be computed from them: a
#: short aperture for the one reading per pulse that counts it, no source or measure wait.
SMU_APERTURE_S = 2e-5
SMU_SOURCE_WAIT_S = 0.0
SMU_MEASURE_WAIT_S = 0.0
SMU_PULSE_DELAY_S = 0.0
#: Aperture of a read (set for the read and restored after it, in the same message).
SMU_READ_APERTURE_S = 1e-3
#: Shortest pulse period the driver programs, and its margin over one trigger cycle.
MIN_PERIOD_S = 1e-4
PERIOD_MARGIN = 1.25

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


def round_up(x: float, digits: int = 4) -> float:
    """`x` rounded up to `digits` significant digits: a time that reads cleanly on the wire
    (2.8e-07, not 2.7999999999999997e-07) and is never shorter than asked."""
    if x <= 0.0:
        return x
    scale = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return float(f"{math.ceil(x / scale - 1e-6) * scale:.{digits}g}")


def trigger_cycle_s(width_s: float) -> float:
    """Time one timer-triggered pulse occupies the channel with the start-up settings: pulse
    delay, width, source and measure waits, and the measurement aperture. A trigger arriving
    sooner is not acted on."""
    return SMU_PULSE_DELAY_S + width_s + SMU_SOURCE_WAIT_S + SMU_MEASURE_WAIT_S + SMU_APERTURE_S


def pulse_period(width_s: float) -> float:
    """The timer period of a train: at least one trigger cycle plus margin, at least twice the
    width (duty cycle at most 50 %), at least `MIN_PERIOD_S`."""
    return round_up(max(MIN_PERIOD_S, 2.0 * width_s, PERIOD_MARGIN * trigger_cycle_s(width_s)))


def current_range(compliance_a: float) -> float:
    """The smallest fixed measurement range that holds the compliance current."""
    for r in SMU_CURRENT_RANGES_A:
        if r >= compliance_a:
            return r
    raise ValueError(f"no current range holds {compliance_a:g} A")


def smu_reset() -> str:
    """A known start state: reset (output off, 0 V) and clear the status and error queue."""
    return join(RST, CLS, OPC)


def smu_configure(compliance_a: float) -> str:
    """Fixed-level voltage source in pulse mode at 0 V, explicit ranges, aperture and waits,
    timer-paced trains; the output stays off (one message)."""
    return join(
        set_cmd(SOUR_FUNC_MODE, "VOLT"),
        set_cmd(SOUR_VOLT_MODE, "FIX"),
        set_cmd(SOUR_VOLT_RANG, SMU_SOURCE_RANGE_V),
        set_cmd(SOUR_FUNC_SHAP, SHAPE_PULSE),
        set_cmd(SOUR_VOLT, 0.0),
        set_cmd(SOUR_VOLT_TRIG, 0.0),
        set_cmd(SOUR_PULS_DEL, SMU_PULSE_DELAY_S),
        set_cmd(SENS_FUNC, '"CURR"'),
        set_cmd(SENS_CURR_RANG_AUTO, "OFF"),
        set_cmd(SENS_CURR_RANG, current_range(compliance_a)),
        set_cmd(SENS_CURR_APER, SMU_APERTURE_S),
        set_cmd(SENS_CURR_PROT, compliance_a),
        set_cmd(SOUR_WAIT_AUTO, "OFF"),
        set_cmd(SOUR_WAIT_GAIN, 0.0),
        set_cmd(SOUR_WAIT_OFFS, SMU_SOURCE_WAIT_S),
        set_cmd(SENS_WAIT_AUTO, "OFF"),
        set_cmd(SENS_WAIT_GAIN, 0.0),
        set_cmd(SENS_WAIT_OFFS, SMU_MEASURE_WAIT_S),
        set_cmd(TRIG_SOUR, "TIM"),
        set_cmd(TRIG_TIM, MIN_PERIOD_S),
        OPC,
    )


def smu_output_on() -> str:
    return join(set_cmd(OUTP, "ON"), OPC)


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
    """One pulse train on the connected device; the shape is resent only when it changed.

    `*OPC?` answers once the message is accepted; it does not wait for the train's end
    (`smu_idle_count` does).
    """
    units: list[str] = [set_cmd(SOUR_FUNC_SHAP, SHAPE_PULSE)]
    if amplitude_v is not None:
        units.append(set_cmd(SOUR_VOLT_TRIG, amplitude_v))
    if period_s is not None:
        units.append(set_cmd(TRIG_TIM, period_s))
    if width_s is not None:
        units.append(set_cmd(SOUR_PULS_WIDT, width_s))
    units += [set_cmd(TRIG_COUN, int(count)), f"{INIT} {CHANNEL_LIST}", OPC]
    return join(*units)


def smu_idle_count() -> str:
    """Is the trigger system idle, and how many pulses has the buffer counted: '1;37'."""
    return join(IDLE_ALL, TRAC_POIN_ACT)


def smu_read(read_v: float) -> str:
    """A DC spot measurement at `read_v` on the connected device, its compliance state, and
    back to 0 V in pulse mode before anything else happens (reply: 'current;tripped')."""
    return join(
        set_cmd(SOUR_FUNC_SHAP, SHAPE_DC),
        set_cmd(TRIG_COUN, 1),
        set_cmd(SENS_CURR_APER, SMU_READ_APERTURE_S),
        set_cmd(SOUR_VOLT, read_v),
        f"{MEAS_CURR} {CHANNEL_LIST}",
        SENS_CURR_TRIP,
        set_cmd(SOUR_VOLT, 0.0),
        set_cmd(SENS_CURR_APER, SMU_APERTURE_S),
        set_cmd(SOUR_FUNC_SHAP, SHAPE_PULSE),
    )


def smu_shutdown() -> str:
    """Abort a running train, 0 V, output off (the matrix opens after this)."""
    return join(
        f"{ABOR_ALL} {CHANNEL_LIST}",
        set_cmd(SOUR_VOLT, 0.0),
        set_cmd(SOUR_VOLT_TRIG, 0.0),
        set_cmd(OUTP, "OFF"),
        OPC,
    )


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


def parse_idle_count(reply: str) -> tuple[bool, int]:
    """'1;37' -> (True, 37)."""
    parts = reply.split(";")
    if len(parts) != 2 or parts[0] not in ("0", "1"):
        raise ValueError(f"not an idle;count reply: {reply!r}")
    return parts[0] == "1", parse_int(parts[1])


def parse_read(reply: str) -> tuple[float, bool]:
    """'1.25E-06;0' -> (1.25e-06, False): the current and whether compliance was hit."""
    parts = reply.split(";")
    if len(parts) != 2 or parts[1] not in ("0", "1"):
        raise ValueError(f"not a current;tripped reply: {reply!r}")
    return parse_float(parts[0]), parts[1] == "1"


SMU_MODEL_RE = re.compile(r"^[^,]*,\s*B29\d\d[A-Z]{1,2}\s*,", re.IGNORECASE)


# -- switch matrix (707B/708B, TSP) --------------------------------------------------------
MATRIX_ROW_SOURCE = "A"  # the pulse source (and the B2900's reads): force (HI) on matrix row A
MATRIX_ROW_GROUND = "B"  # SMU LO / ground on matrix row B
MATRIX_ROW_READ_SMU = "C"  # the 4200A's read SMU on matrix row C
MATRIX_COLUMNS_PER_SLOT = 12
MATRIX_SLOTS = 6
MATRIX_OPEN_ALL = 'channel.open("allslots")'
MATRIX_GETCLOSE = 'print(channel.getclose("allslots"))'
MATRIX_ERR_COUNT = "print(errorqueue.count)"
MATRIX_ERR_NEXT = "print(errorqueue.next())"
MATRIX_ERR_CLEAR = "errorqueue.clear()"
MATRIX_PROMPTS_OFF = "localnode.prompts = 0"
MATRIX_SHOWERRORS_OFF = "localnode.showerrors = 0"
MATRIX_NOTHING_CLOSED = "nil"
MATRIX_EMPTY_SLOT = "Empty Slot"
#: Lines a TSP instrument prints as prompts when `localnode.prompts` is 1.
TSP_PROMPTS = ("TSP>", "TSP?", ">>>>")

_CHANNEL_RE = re.compile(r"^([1-9])([A-H])(\d\d)$")
EXCLUSIVECLOSE_RE = re.compile(r'^channel\.exclusiveclose\("([^"]*)"\)$')
OPEN_RE = re.compile(r'^channel\.open\("([^"]*)"\)$')
SLOT_IDN_RE = re.compile(r"^print\(slot\[(\d)\]\.idn\)$")
TSP_ASSIGN_RE = re.compile(r"^localnode\.(prompts|showerrors)\s*=\s*([01])$")
MATRIX_MODEL_RE = re.compile(r"^[^,]*,\s*(MODEL\s+)?70[78]B\s*,", re.IGNORECASE)
_CARD_RE = re.compile(r"(\d+)\s*x\s*(\d+)", re.IGNORECASE)


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

    def device(self, row: int, col: int, source_row: str = MATRIX_ROW_SOURCE) -> str:
        """The two crosspoints that put the source on `source_row` across device (row, col)."""
        return f"{self.channel(source_row, row)},{self.channel(MATRIX_ROW_GROUND, self.rows + col)}"

    def line_of(self, channel: str) -> tuple[str, int]:
        """'1A05' -> ('A', 4); raises ValueError for a malformed or absent channel."""
        m = _CHANNEL_RE.match(channel.strip())
        if not m:
            raise ValueError(f"malformed channel {channel!r}")
        slot, row, col = int(m.group(1)), m.group(2), int(m.group(3))
        if not 1 <= slot <= self.slots or not 1 <= col <= self.columns_per_slot:
            raise ValueError(f"channel {channel!r} does not exist")
        return row, (slot - 1) * self.columns_per_slot + col - 1


def matrix_init() -> list[str]:
    """No prompts, no error echo, an empty error queue; `*OPC?` marks the end."""
    return [MATRIX_PROMPTS_OFF, MATRIX_SHOWERRORS_OFF, MATRIX_ERR_CLEAR, OPC]


def slot_idn(slot: int) -> str:
    return f"print(slot[{slot}].idn)"


def matrix_cards(slots: int = MATRIX_SLOTS) -> list[str]:
    """What is installed in each slot, one reply line per slot."""
    return [slot_idn(n) for n in range(1, slots + 1)]


def card_size(idn: str) -> tuple[int, int] | None:
    """(rows, columns) of a card from its `slot[n].idn` reply, or None for an empty slot or a
    card that does not state its matrix size ('7174A,8x12 ...' -> (8, 12))."""
    if idn.strip() == MATRIX_EMPTY_SLOT:
        return None
    parts = idn.split(",")
    m = _CARD_RE.search(parts[1]) if len(parts) > 1 else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def matrix_connect(mapping: MatrixMap, row: int, col: int, source_row: str) -> list[str]:
    """Connect device (row, col) to the source on `source_row` and nothing else; the error
    count in the same exchange says whether the close was refused (reply: count, '1')."""
    return [
        f'channel.exclusiveclose("{mapping.device(row, col, source_row)}")',
        MATRIX_ERR_COUNT,
        OPC,
    ]


def matrix_release() -> list[str]:
    """Open every relay (reply: error count, '1')."""
    return [MATRIX_OPEN_ALL, MATRIX_ERR_COUNT, OPC]


def matrix_errors(count: int) -> list[str]:
    return [MATRIX_ERR_NEXT] * count


def tsp_number(value: float) -> str:
    """How TSP prints a number with the default ascii precision: '0.00000e+00'."""
    return f"{float(value):.5e}"


def parse_tsp_int(reply: str) -> int:
    """A count printed by TSP ('3.00000e+00', or '3' on firmware that prints integers)."""
    value = parse_float(reply)
    if value != int(value) or value < 0:
        raise ValueError(f"not a count: {reply!r}")
    return int(value)


def matrix_error_reply(code: int, message: str) -> str:
    """The tab-separated reply of `print(errorqueue.next())`: code, message, severity, node."""
    return f"{code}\t{message}\t0\t1"


def parse_matrix_error(reply: str) -> tuple[int, str]:
    parts = reply.split("\t")
    if len(parts) != 4 or not _FLOAT_RE.match(parts[0].strip()):
        raise ValueError(f"not an errorqueue.next() reply: {reply!r}")
    return int(float(parts[0])), parts[1]


MATRIX_QUEUE_EMPTY = (0, "Queue Is Empty")
MATRIX_ERR_SYNTAX = (-285, "TSP Syntax error")
MATRIX_ERR_CHANNEL = (1115, "Parameter error invalid channel list")
