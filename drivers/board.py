"""The crossbar pulse board line protocol, written once for its driver and its emulator.

A frame is one ASCII line: ``<tag> <command> <args...>*<crc>`` + LF, where `tag` is four
hex digits chosen by the host and echoed in every reply line (so a late reply to an
earlier request is recognised and dropped) and `crc` is the checksum of everything before
the ``*``: CRC-16/CCITT (init 0xFFFF, `binascii.crc_hqx`, four upper-case hex digits) for a
frame of up to `LONG_FRAME` bytes, CRC-32 (`binascii.crc32`, eight digits) for a longer one,
whose many more bits a 16-bit check guards too weakly. The full specification, with
examples, is docs/serial-protocol.md.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: Longest frame either side accepts, terminator excluded.
MAX_FRAME = 65536
#: A frame whose part before the ``*`` is longer than this carries a CRC-32.
LONG_FRAME = 64
#: Tag of a reply to a request whose tag could not be read (checksum or framing error).
NO_TAG = "----"

# Commands (host -> board)
ID = "ID?"
STAT = "STAT?"
LAST = "LAST?"
BEGIN = "BEGIN"
SHAPE = "SHAPE"
ROW = "ROW"
PULSE = "PULSE"
EXEC = "EXEC"
READ_ROW = "RROW?"
READ_ARRAY = "RARR?"
RANGE = "RANGE?"
ABORT = "ABORT"
SAFE = "SAFE"
WDOG = "WDOG"
READ_V = "RDV"
READ_V_Q = "RDV?"

# Replies (board -> host)
R_ID = "ID"
R_STAT = "STAT"
R_LAST = "LAST"
R_OK = "OK"
R_DONE = "DONE"
R_ROW = "RROW"
R_END = "END"
R_ERR = "ERR"
R_RANGE = "RANGE"
R_READ_V = "RDV"

# Error codes
E_CRC = 1
E_SYNTAX = 2
E_RANGE = 3
E_BATCH = 4
E_STALE = 5
E_OVERFLOW = 6
E_INCOMPLETE = 7
E_BUSY = 8
ERROR_NAMES = {
    E_CRC: "checksum mismatch",
    E_SYNTAX: "unknown command or malformed arguments",
    E_RANGE: "value out of range",
    E_BATCH: "no such staged batch",
    E_STALE: "batch number not above the last applied batch",
    E_OVERFLOW: "line too long",
    E_INCOMPLETE: "batch incomplete",
    E_BUSY: "a batch is executing",
}

#: Board limits (the emulator enforces them; the driver checks plans against them first).
BOARD_MAX_ABS_V = 6.0
BOARD_MIN_WIDTH_S = 1e-9
BOARD_MAX_WIDTH_S = 1.0
BOARD_MAX_COUNT = 65535
BOARD_MAX_GROUPS = 64
BOARD_MAX_WATCHDOG_MS = 3_600_000
#: Read voltage range of the board (V) and the voltage it reads at after power-up or reset.
BOARD_MAX_READ_V = 1.0
BOARD_POWER_UP_READ_V = 0.2
BIAS_SCHEMES = ("none", "v2", "v3")


class FrameError(ValueError):
    """A line that is not a valid frame (bad characters, checksum, layout)."""


def crc16(data: bytes) -> str:
    return f"{binascii.crc_hqx(data, 0xFFFF):04X}"


def crc32(data: bytes) -> str:
    return f"{binascii.crc32(data):08X}"


def crc(head: bytes) -> str:
    """The checksum a frame with this head carries: CRC-32 when it is long, else CRC-16."""
    return crc32(head) if len(head) > LONG_FRAME else crc16(head)


def encode(tag: str, body: str) -> bytes:
    """A frame without its LF terminator."""
    head = f"{tag} {body}".encode("ascii")
    return head + b"*" + crc(head).encode("ascii")


_FRAME_RE = re.compile(rb"^([0-9A-F]{4}|----) ([\x20-\x7e]+)\*([0-9A-F]{8}|[0-9A-F]{4})$")


def decode(line: bytes) -> tuple[str, str]:
    """(tag, body) of a frame; raises FrameError naming what is wrong."""
    if len(line) > MAX_FRAME:
        raise FrameError(f"frame of {len(line)} bytes is longer than {MAX_FRAME}")
    m = _FRAME_RE.match(line)
    if not m:
        raise FrameError(f"malformed frame {line[:60]!r}")
    head = line[: line.rindex(b"*")]
    expected = crc(head).encode("ascii")
    if len(expected) != len(m.group(3)):
        raise FrameError(
            f"checksum of the wrong kind in {line[:60]!r} (a frame longer than {LONG_FRAME} "
            "bytes carries a CRC-32, a shorter one a CRC-16)"
        )
    if expected != m.group(3):
        raise FrameError(f"checksum mismatch in {line[:60]!r}")
    return m.group(1).decode("ascii"), m.group(2).decode("ascii")


def tag_of(n: int) -> str:
    return f"{n % 0x10000:04X}"


def num(x: float) -> str:
    """Shortest text that parses back to the same double."""
    return repr(float(x))


# -- request builders (driver) ----------------------------------------------------------------
def begin(batch: int, ngroups: int, bias: str) -> str:
    return f"{BEGIN} {batch} {ngroups} {bias}"


def shape(batch: int, group: int, amplitude_v: float, width_s: float, parallel: bool) -> str:
    return f"{SHAPE} {batch} {group} {num(amplitude_v)} {num(width_s)} {int(parallel)}"


def row(batch: int, group: int, r: int, counts: list[int]) -> str:
    return f"{ROW} {batch} {group} {r} {','.join(str(int(n)) for n in counts)}"


def pulse(batch: int, group: int, r: int, c: int, n: int) -> str:
    return f"{PULSE} {batch} {group} {r} {c} {n}"


def execute(batch: int) -> str:
    return f"{EXEC} {batch}"


def read_row(r: int) -> str:
    return f"{READ_ROW} {r}"


def watchdog(ms: int) -> str:
    return f"{WDOG} {int(ms)}"


def read_voltage(volts: float) -> str:
    return f"{READ_V} {num(volts)}"


# -- what the board echoes (driver and emulator both build them here) ------------------------
def ok_begin(batch: int, ngroups: int, bias: str) -> str:
    return f"{R_OK} {BEGIN} {batch} {ngroups} {bias}"


def ok_shape(batch: int, group: int, amplitude_v: float, width_s: float, parallel: bool) -> str:
    return f"{R_OK} {SHAPE} {batch} {group} {num(amplitude_v)} {num(width_s)} {int(parallel)}"


def ok_row(batch: int, group: int, r: int, total: int) -> str:
    return f"{R_OK} {ROW} {batch} {group} {r} {total}"


def ok_pulse(batch: int, group: int, r: int, c: int, n: int) -> str:
    return f"{R_OK} {PULSE} {batch} {group} {r} {c} {n}"


def ok_abort(batch: int, pulses: int) -> str:
    return f"{R_OK} {ABORT} {batch} {pulses}"


def ok_safe() -> str:
    return f"{R_OK} {SAFE}"


def ok_watchdog(ms: int) -> str:
    return f"{R_OK} {WDOG} {int(ms)}"


def ok_read_voltage(volts: float) -> str:
    return f"{R_OK} {READ_V} {num(volts)}"


# -- reply builders (emulator) ----------------------------------------------------------------
def error(code: int, detail: str = "") -> str:
    text = ERROR_NAMES.get(code, "error")
    if detail:
        text = f"{text}: {detail}"
    return f"{R_ERR} {code} {_printable(text)[:200]}"


def _printable(text: str) -> str:
    return "".join(ch if " " <= ch <= "~" and ch != "*" else "?" for ch in text)


def row_values(r: int, values: list[float]) -> str:
    return f"{R_ROW} {r} {','.join(num(v) for v in values)}"


# -- reply parsing (driver) -------------------------------------------------------------------
@dataclass(frozen=True)
class BoardIdentity:
    model: str
    serial: str
    firmware: str
    rows: int
    cols: int


def parse_identity(body: str) -> BoardIdentity:
    parts = body.split(" ")
    if len(parts) != 6 or parts[0] != R_ID:
        raise FrameError(f"not an identity reply: {body!r}")
    try:
        return BoardIdentity(parts[1], parts[2], parts[3], int(parts[4]), int(parts[5]))
    except ValueError as exc:
        raise FrameError(f"bad identity reply {body!r}") from exc


def parse_error(body: str) -> tuple[int, str] | None:
    """(code, text) if `body` is an error reply, else None."""
    if not body.startswith(R_ERR + " "):
        return None
    parts = body.split(" ", 2)
    try:
        return int(parts[1]), parts[2] if len(parts) > 2 else ""
    except ValueError as exc:
        raise FrameError(f"bad error reply {body!r}") from exc


def parse_row_values(body: str, expected_row: int, cols: int) -> list[float]:
    parts = body.split(" ")
    if len(parts) != 3 or parts[0] != R_ROW or parts[1] != str(expected_row):
        raise FrameError(f"expected the values of row {expected_row}, got {body[:60]!r}")
    try:
        values = [float(v) for v in parts[2].split(",")]
    except ValueError as exc:
        raise FrameError(f"bad number in row {expected_row}: {body[:60]!r}") from exc
    if len(values) != cols:
        raise FrameError(f"row {expected_row} has {len(values)} values, expected {cols}")
    return values


def _numbers(body: str, head: str, n: int, conv: Callable[[str], T], what: str) -> list[T]:
    parts = body.split(" ")
    if len(parts) != n + 1 or parts[0] != head:
        raise FrameError(f"expected '{head}' with {n} {what}s, got {body[:60]!r}")
    try:
        return [conv(p) for p in parts[1:]]
    except ValueError as exc:
        raise FrameError(f"bad {what} in {body[:60]!r}") from exc


def parse_ints(body: str, head: str, n: int) -> list[int]:
    """The `n` integers after `head` in a reply such as 'LAST 12 40'."""
    return _numbers(body, head, n, int, "integer")


@dataclass(frozen=True)
class BoardStatus:
    """The reply to STAT?: applied and staged batches, totals, and what runs now."""

    last_batch: int
    staged_batch: int
    pulses_total: int
    errors: int
    executing_batch: int
    safe: bool


def parse_status(body: str) -> BoardStatus:
    v = parse_ints(body, R_STAT, 6)
    return BoardStatus(v[0], v[1], v[2], v[3], v[4], bool(v[5]))


def parse_floats(body: str, head: str, n: int) -> list[float]:
    """The `n` numbers after `head` in a reply such as 'RANGE 1e-06 0.0001'."""
    return _numbers(body, head, n, float, "number")
