"""The ArC ONE serial protocol, written once for its driver and its emulator.

ArC ONE (ArC Instruments) is an mbed-based board for a crossbar of up to 32 word lines x
32 bit lines. The host talks to it over a USB virtual serial port: every command is a job
code line followed by one line per argument (ASCII, LF-terminated); the board answers only
some jobs, with raw little-endian float32 resistances (or the ASCII line ``1`` after the
init handshake, or two uint16 after the firmware-version query). There is no error channel:
a bad command is not answered, so the host can only see a missing or short reply.

Facts and their public sources (docs/instruments.md, "ArC ONE"):

- serial settings 921600 baud, even parity, one stop bit (arc1_pyqt `arc1pyqt/instrument.py`,
  libarc1 `libarc1/arc.py`); 8 data bits and no flow control are pyserial's defaults there;
- job codes and argument order (libarc1 `libarc1/packets.py`, `modules/readops.py`;
  arc1_pyqt `instrument.py`, `main.py` for ``011``);
- reads return float32 resistances, read-all word-major (W = 1..words outer, B inner);
- pulse amplitude 0 to +-12 V, width 90 ns to 10 s (the ArC ONE manual; the GUI clamps
  widths to that range);
- integers are sent as ``%d`` and voltages as ``%f`` by both public hosts; widths are sent
  here in exponent notation (``%.6e``), as the GUI's ConvergeToState and SMUtils pulse
  panels do, because ``%f`` turns 90 ns into ``0.000000``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Port settings, all given when the port is opened.
BAUDRATE = 921600
PARITY = "E"
STOPBITS = 1
BYTESIZE = 8

#: Lines of the board.
BOARD_WORDS = 32
BOARD_BITS = 32

#: Pulse and read ranges (ArC ONE manual: "0 to +-12V and down to 90ns"; GUI: 90 ns-10 s).
MAX_ABS_V = 12.0
MIN_WIDTH_S = 90e-9
MAX_WIDTH_S = 10.0
#: Read averaging cycles the board accepts here (the GUI suggests 50).
MAX_CYCLES = 1000

# Job codes (host -> board).
RESET = "00"
INIT = "0"
SET_READ = "01"
SET_HARDWARE = "011"
VERSION = "999"
READ_ONE = "1"
READ_ALL = "2"
READ_ALL_MODE = 1
SELECT = "02"
PULSE_ACTIVE = "04"
PULSE_READ = "3"

#: Arguments each job takes (the lines after the job code).
ARGS = {
    RESET: 0,
    INIT: 7,
    SET_READ: 2,
    SET_HARDWARE: 2,
    VERSION: 0,
    READ_ONE: 2,
    READ_ALL: 3,
    SELECT: 2,
    PULSE_ACTIVE: 2,
    PULSE_READ: 4,
}

#: What each job is, for messages.
NAMES = {
    RESET: "reset",
    INIT: "init",
    SET_READ: "read mode",
    SET_HARDWARE: "hardware settings",
    VERSION: "firmware version",
    READ_ONE: "read one device",
    READ_ALL: "read all",
    SELECT: "select",
    PULSE_ACTIVE: "pulse selected",
    PULSE_READ: "pulse and read",
}

#: Read modes (libarc1 READ_MODE): classic reads only at 0.5 V; TIA4P (4-point, the manual's
#: recommendation) needs code 3 for a negative read voltage.
READ_MODES = {"classic": 0, "tia": 1, "tia4p": 2}
TIA4P_NEGATIVE = 3
CLASSIC_READ_V = 0.5
#: Session modes (libarc1 SESSION). BNC-to-local (2) makes the board a switch matrix only and
#: offline (3) disables it: neither can pulse or read, so the driver offers neither.
SESSION_MODES = {"local": 0, "external_bnc": 1}
#: Sneak-path schemes (GUI combobox order: 0 "Write: V/3", 1 "Write: V/2").
SNEAK_PATH = {"v3": 0, "v2": 1}
BIAS_OF_SNEAK = {code: bias for bias, code in SNEAK_PATH.items()}

#: Reply of a successful init handshake.
INIT_OK = b"1"
FLOAT_BYTES = 4
VERSION_BYTES = 4


class ArgError(ValueError):
    """A value the board cannot take; raised before anything is sent."""


def fmt_int(value: int) -> str:
    return f"{int(value):d}"


def fmt_volt(value: float) -> str:
    """Voltages as both public hosts send them (``%f``): 1 uV resolution within +-12 V."""
    if not math.isfinite(value):
        raise ArgError(f"voltage {value!r} is not finite")
    return f"{value:f}"


def fmt_width(value: float) -> str:
    """Widths always in exponent notation: ``%f`` would send 90 ns as ``0.000000``."""
    if not math.isfinite(value):
        raise ArgError(f"width {value!r} is not finite")
    return f"{value:.6e}"


def packet(job: str, *args: str) -> bytes:
    """A command: the job code and its arguments, one LF-terminated line each."""
    if len(args) != ARGS[job]:
        raise ArgError(f"job {job} takes {ARGS[job]} arguments, got {len(args)}")
    return "".join(f"{part}\n" for part in (job, *args)).encode("ascii")


def describe(data: bytes) -> str:
    """A command as one readable string: `2 1 32 31` (read all)."""
    parts = data.decode("ascii", "backslashreplace").split("\n")
    text = " ".join(p for p in parts if p)
    job = parts[0] if parts else ""
    return f"`{text}` ({NAMES.get(job, 'unknown job')})"


@dataclass(frozen=True)
class Settings:
    """What the init handshake tells the board."""

    cycles: int = 50
    words: int = BOARD_WORDS
    bits: int = BOARD_BITS
    read_mode: int = READ_MODES["tia4p"]
    session: int = SESSION_MODES["local"]
    sneak_path: int = SNEAK_PATH["v2"]
    read_v: float = 0.5


def check_address(word: int, bit: int, words: int, bits: int) -> None:
    """W and B are 1-based and within the configured array."""
    if not (1 <= word <= words and 1 <= bit <= bits):
        raise ArgError(
            f"device W{word} B{bit} is outside the configured {words} x {bits} array "
            "(word and bit lines count from 1)"
        )


def check_pulse(amplitude_v: float, width_s: float) -> None:
    if not math.isfinite(amplitude_v) or abs(amplitude_v) > MAX_ABS_V:
        raise ArgError(f"amplitude {amplitude_v:g} V is beyond the ArC ONE's +-{MAX_ABS_V:g} V")
    if not math.isfinite(width_s) or not MIN_WIDTH_S <= width_s <= MAX_WIDTH_S:
        raise ArgError(
            f"width {width_s:g} s is outside the ArC ONE's [{MIN_WIDTH_S:g}, {MAX_WIDTH_S:g}] s"
        )


def effective_read_mode(read_mode: int, read_v: float) -> int:
    """TIA4P takes code 3 for a negative read voltage (both public hosts switch it)."""
    if read_mode == READ_MODES["tia4p"] and read_v < 0:
        return TIA4P_NEGATIVE
    return read_mode


def check_settings(s: Settings) -> None:
    if not 1 <= s.cycles <= MAX_CYCLES:
        raise ArgError(f"read cycles {s.cycles}: allowed 1..{MAX_CYCLES}")
    if not (1 <= s.words <= BOARD_WORDS and 1 <= s.bits <= BOARD_BITS):
        raise ArgError(
            f"array {s.words} x {s.bits}: the ArC ONE has {BOARD_WORDS} word lines and "
            f"{BOARD_BITS} bit lines"
        )
    if s.read_mode not in (*READ_MODES.values(), TIA4P_NEGATIVE):
        raise ArgError(f"read mode {s.read_mode}: allowed {sorted(READ_MODES.values())}")
    if s.session not in SESSION_MODES.values():
        raise ArgError(f"session mode {s.session}: allowed {sorted(SESSION_MODES.values())}")
    if s.sneak_path not in SNEAK_PATH.values():
        raise ArgError(f"sneak-path scheme {s.sneak_path}: allowed {sorted(SNEAK_PATH.values())}")
    if not math.isfinite(s.read_v) or s.read_v == 0.0 or abs(s.read_v) > MAX_ABS_V:
        raise ArgError(f"read voltage {s.read_v!r} V: non-zero, within +-{MAX_ABS_V:g} V")
    if s.read_mode == READ_MODES["classic"] and s.read_v != CLASSIC_READ_V:
        raise ArgError(f"classic read mode reads only at {CLASSIC_READ_V:g} V, not {s.read_v:g} V")


# -- commands ----------------------------------------------------------------------------------
def reset() -> bytes:
    return packet(RESET)


def init(s: Settings) -> bytes:
    check_settings(s)
    return packet(
        INIT,
        fmt_int(s.cycles),
        fmt_int(s.words),
        fmt_int(s.bits),
        fmt_int(effective_read_mode(s.read_mode, s.read_v)),
        fmt_int(s.session),
        fmt_int(s.sneak_path),
        fmt_volt(s.read_v),
    )


def set_read(read_mode: int, read_v: float) -> bytes:
    return packet(SET_READ, fmt_int(effective_read_mode(read_mode, read_v)), fmt_volt(read_v))


def set_hardware(cycles: int, sneak_path: int) -> bytes:
    return packet(SET_HARDWARE, fmt_int(cycles), fmt_int(sneak_path))


def version() -> bytes:
    return packet(VERSION)


def read_one(word: int, bit: int) -> bytes:
    return packet(READ_ONE, fmt_int(word), fmt_int(bit))


def read_all(words: int, bits: int) -> bytes:
    return packet(READ_ALL, fmt_int(READ_ALL_MODE), fmt_int(words), fmt_int(bits))


def select(word: int, bit: int) -> bytes:
    return packet(SELECT, fmt_int(word), fmt_int(bit))


def pulse_active(amplitude_v: float, width_s: float) -> bytes:
    check_pulse(amplitude_v, width_s)
    return packet(PULSE_ACTIVE, fmt_volt(amplitude_v), fmt_width(width_s))


def pulse_read(word: int, bit: int, amplitude_v: float, width_s: float) -> bytes:
    check_pulse(amplitude_v, width_s)
    return packet(
        PULSE_READ, fmt_int(word), fmt_int(bit), fmt_volt(amplitude_v), fmt_width(width_s)
    )


# -- replies -----------------------------------------------------------------------------------
def encode_floats(values: Sequence[float] | NDArray[np.float32]) -> bytes:
    """Resistances as the board sends them: raw little-endian float32."""
    return np.asarray(values, dtype="<f4").tobytes()


def decode_floats(data: bytes) -> NDArray[np.float32]:
    if len(data) % FLOAT_BYTES:
        raise ValueError(f"{len(data)} bytes is not a whole number of float32 values")
    return np.frombuffer(data, dtype="<f4").copy()


def encode_version(major: int, minor: int) -> bytes:
    return struct.pack("<2H", major, minor)


def decode_version(data: bytes) -> tuple[int, int]:
    major, minor = struct.unpack("<2H", data)
    return int(major), int(minor)


def parse_int(text: str) -> int:
    """An integer argument as the emulator reads it (plain decimal digits, optional sign)."""
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit() or len(body) > 12:
        raise ValueError(f"{text[:20]!r} is not an integer")
    return int(text)


def parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]!r} is not finite")
    return value
