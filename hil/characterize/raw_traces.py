"""Raw pulse-train traces as files: what `characterize` measured, and what `devices fit` reads.

One row per read, in the layout (CSV header, in this order; extra columns are ignored):

    device,cycle,direction,pulse,amplitude_v,width_s,conductance_s

* `device`: a label (characterize writes the device's index 0..K-1; any text works);
* `cycle`: integer >= 0, pairs a SET train with the RESET train that follows it;
* `direction`: `set` (amplitude > 0) or `reset` (amplitude < 0);
* `pulse`: pulses of that train applied so far, 0 = the read before its first pulse;
* `amplitude_v`, `width_s`: the train's pulse (signed amplitude, V; width, s);
* `conductance_s`: the conductance read (S).

The first read at a pulse count is the trace; further reads at the same count (characterize
takes `repeat_reads` after each train's last pulse) are repeated reads of an unchanged device
and measure the read noise. The NPZ file holds the same columns as arrays (direction as
1 = set, -1 = reset) plus the (row, col) of each device on the array.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from hil.characterize.characterization import Traces
from protocols.errors import InputError
from protocols.loading import MAX_DATA_BYTES, read_text
from protocols.spec import Pulse, PulsePair

#: The columns of a traces file, in order.
COLUMNS = ("device", "cycle", "direction", "pulse", "amplitude_v", "width_s", "conductance_s")
_DIRECTIONS = {"set": 1, "reset": -1}


# --- writing --------------------------------------------------------------------------------


def trace_columns(traces: Traces, pulses: PulsePair) -> dict[str, NDArray[Any]]:
    """The long-format columns of `traces`, in acquisition order (cycle, direction, pulse,
    then device; repeated reads after each train's last read)."""
    cycles, _, k = traces.ltp.shape
    parts: dict[str, list[NDArray[Any]]] = {c: [] for c in COLUMNS}
    device = np.arange(k)
    for c in range(cycles):
        for phase, (data, sign) in enumerate(((traces.ltp, 1), (traces.ltd, -1))):
            shape = pulses.shape(sign)
            n = data.shape[1] - 1
            reads = np.concatenate([data[c], traces.repeats[c, phase]])  # (n + 1 + R, K)
            counts = np.concatenate([np.arange(n + 1), np.full(traces.repeats.shape[2], n)])
            rows = reads.shape[0]
            parts["device"].append(np.tile(device, rows))
            parts["cycle"].append(np.full(rows * k, c))
            parts["direction"].append(np.full(rows * k, sign))
            parts["pulse"].append(np.repeat(counts, k))
            parts["amplitude_v"].append(np.full(rows * k, shape.amplitude_v))
            parts["width_s"].append(np.full(rows * k, shape.width_s))
            parts["conductance_s"].append(reads.reshape(-1))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_traces(out: Path, traces: Traces, pulses: PulsePair) -> list[Path]:
    """Write DIR/traces.csv and DIR/traces.npz (atomically); return their paths."""
    cols = trace_columns(traces, pulses)
    direction = np.where(cols["direction"] > 0, "set", "reset")
    lines = [",".join(COLUMNS)]
    lines += [
        f"{d},{c},{s},{p},{a!r},{w!r},{g!r}"
        for d, c, s, p, a, w, g in zip(
            cols["device"].tolist(),
            cols["cycle"].tolist(),
            direction.tolist(),
            cols["pulse"].tolist(),
            cols["amplitude_v"].tolist(),
            cols["width_s"].tolist(),
            cols["conductance_s"].tolist(),
            strict=True,
        )
    ]
    csv_path = out / "traces.csv"
    _write_atomic(csv_path, ("\n".join(lines) + "\n").encode("utf-8"))
    npz_path = out / "traces.npz"
    tmp = out / "traces.npz.tmp.npz"
    arrays: dict[str, Any] = {**cols, "device_row": traces.rows, "device_col": traces.cols}
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, npz_path)
    return [csv_path, npz_path]


# --- reading --------------------------------------------------------------------------------


@dataclass
class TraceData:
    """Traces read from a file, arranged for `characterization.extract`."""

    traces: Traces
    devices: list[str]
    pulses: PulsePair
    has_repeats: bool
    rows_read: int


def _read_text(p: Path) -> str:
    """The file's text through the capped loader (a large experiment is tens of MB)."""
    return read_text(p, str(p), MAX_DATA_BYTES)


@dataclass
class _Column:
    """One column's text values and the file line of each row, for error messages."""

    name: str
    values: list[str]
    lines: _Lines
    source: str

    def fail(self, row: int, problem: str) -> InputError:
        return InputError(
            f"{self.source}: line {self.lines[row]}: column '{self.name}' = "
            f"{self.values[row]!r}: {problem}"
        )

    def numbers(self) -> NDArray[np.float64]:
        """The column as floats; the first value that is not a finite number is an error."""
        try:
            out = np.array(self.values, dtype=np.float64)
        except ValueError:
            for row, text in enumerate(self.values):
                try:
                    float(text)
                except ValueError:
                    raise self.fail(row, "not a number") from None
            raise  # pragma: no cover - numpy and float() agree on what a number is
        bad = ~np.isfinite(out)
        if bad.any():
            raise self.fail(int(np.argmax(bad)), "not finite")
        return out

    def counts(self) -> NDArray[np.int64]:
        """The column as integers >= 0."""
        out = self.numbers()
        bad = (out < 0) | (out != np.floor(out))
        if bad.any():
            raise self.fail(int(np.argmax(bad)), "expected an integer >= 0")
        return out.astype(np.int64)

    def positive(self) -> NDArray[np.float64]:
        out = self.numbers()
        bad = out <= 0
        if bad.any():
            raise self.fail(int(np.argmax(bad)), "must be > 0")
        return out


def _line_of(text: str, row: int) -> int:
    """File line of data row `row` (0-based, blank lines skipped), found by re-reading."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    seen = -1
    for fields in reader:
        if fields:
            seen += 1
            if seen == row:
                return reader.line_num
    return reader.line_num


class _Lines:
    """Line numbers of the data rows, computed only when an error needs one."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __getitem__(self, row: int) -> int:
        return _line_of(self._text, row)


def _columns(text: str, source: str) -> dict[str, _Column]:
    """The named columns of a traces CSV, as text (C-level parsing; no loop in Python)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise InputError(
                f"{source}: the file is empty; expected the header {','.join(COLUMNS)}"
            )
        names = [h.strip() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise InputError(
                f"{source}: missing column '{missing[0]}' (the header needs "
                f"{','.join(COLUMNS)}; extra columns are ignored)"
            )
        rows = [r for r in reader if r]  # csv yields [] for a blank line
    except csv.Error as exc:
        raise InputError(f"{source}: line {reader.line_num}: not valid CSV: {exc}") from None
    if not rows:
        raise InputError(f"{source}: no reads below the header")
    lines = _Lines(text)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    short = lengths < len(names)
    if short.any():
        row = int(np.argmax(short))
        raise InputError(
            f"{source}: line {lines[row]}: {lengths[row]} fields, the header has {len(names)}"
        )
    columns = list(zip(*rows, strict=False))  # fields past the shortest row are not read
    out: dict[str, _Column] = {}
    for name in COLUMNS:
        values = np.char.strip(np.array(columns[names.index(name)], dtype=str)).tolist()
        out[name] = _Column(name, values, lines, source)
    return out


def read_traces_csv(path: str | Path) -> TraceData:
    """Read a traces CSV (layout in the module docstring); one-line InputError if bad."""
    p = Path(path)
    source = str(p)
    cols = _columns(_read_text(p), source)
    direction_text = np.char.lower(np.array(cols["direction"].values))
    known = np.isin(direction_text, list(_DIRECTIONS))
    if not known.all():
        raise cols["direction"].fail(int(np.argmax(~known)), "expected set or reset")
    sign = np.where(direction_text == "set", 1, -1)
    amplitude = cols["amplitude_v"].numbers()
    wrong = amplitude * sign <= 0
    if wrong.any():
        row = int(np.argmax(wrong))
        want = "> 0 for set" if sign[row] > 0 else "< 0 for reset"
        raise cols["amplitude_v"].fail(row, f"expected {want}")
    width = cols["width_s"].positive()
    g = cols["conductance_s"].positive()
    cycle = cols["cycle"].counts()
    pulse = cols["pulse"].counts()
    device = cols["device"].values
    if not all(device):
        raise cols["device"].fail(device.index(""), "is empty")
    reads = Reads(device, cycle, sign.astype(np.int64), pulse, amplitude, width, g)
    return arrange(reads, source)


def _train_pulse(rows: list[tuple[float, float]], name: str, source: str) -> Pulse:
    """The one pulse every train of a direction uses; refuse a mixture or an impossible one."""
    shapes = Counter((round(a, 12), round(w, 15)) for a, w in rows)
    if len(shapes) > 1:
        listed = ", ".join(f"{a:g} V / {w:g} s" for a, w in list(shapes)[:3])
        raise InputError(
            f"{source}: the {name} trains use {len(shapes)} different pulses ({listed}); "
            "a fit needs identical pulses within a direction"
        )
    amplitude, width = next(iter(shapes))
    try:
        return Pulse(amplitude_v=amplitude, width_s=width)
    except ValidationError as exc:
        msg = str(exc.errors(include_url=False)[0]["msg"])
        text = f"{source}: the {name} pulse {amplitude:g} V / {width:g} s: {msg}"
        raise InputError(text) from None


@dataclass
class Reads:
    """Validated reads, one entry per row of a traces file (direction: +1 set, -1 reset)."""

    device: list[str]
    cycle: NDArray[np.int64]
    direction: NDArray[np.int64]
    pulse: NDArray[np.int64]
    amplitude_v: NDArray[np.float64]
    width_s: NDArray[np.float64]
    conductance_s: NDArray[np.float64]


def _train_pulse_of(reads: Reads, sign: int, name: str, source: str) -> Pulse:
    sel = reads.direction == sign
    amp, width = reads.amplitude_v[sel], reads.width_s[sel]
    if amp.min() == amp.max() and width.min() == width.max():
        pairs = [(float(amp[0]), float(width[0]))]
    else:
        both = np.unique(np.stack([amp, width], axis=1), axis=0)
        pairs = [(float(a), float(w)) for a, w in both]
    return _train_pulse(pairs, name, source)


def arrange(reads: Reads, source: str) -> TraceData:
    """Arrange reads into the (cycles, pulses + 1, devices) arrays of `Traces` (vectorised).

    Missing reads are NaN (the extraction skips them). The first read at a pulse count is the
    trace; repeated reads at a train's last pulse count go to `repeats`, as many per train as
    most trains have (a train with another number contributes none, so every read-noise group
    has the same size); repeated reads elsewhere are not used.
    """
    devices, dev = np.unique(np.array(reads.device), return_inverse=True)
    first_seen = np.argsort(np.unique(dev, return_index=True)[1])  # keep the file's order
    order = np.empty_like(first_seen)
    order[first_seen] = np.arange(first_seen.size)
    dev = order[dev]
    names = [str(devices[i]) for i in first_seen]
    cycle_ids, cyc = np.unique(reads.cycle, return_inverse=True)
    k, n_cyc = len(names), cycle_ids.size
    last: dict[int, int] = {}
    for sign, name in ((1, "set"), (-1, "reset")):
        sel = reads.direction == sign
        last[sign] = int(reads.pulse[sel].max()) if sel.any() else -1
        if last[sign] < 1:
            raise InputError(
                f"{source}: no {name} train with a pulse: the fit needs SET and RESET trains"
            )
    pulses = PulsePair(
        set=_train_pulse_of(reads, 1, "set", source),
        reset=_train_pulse_of(reads, -1, "reset", source),
    )
    top = max(last.values()) + 1
    phase = (reads.direction < 0).astype(np.int64)  # 0 set, 1 reset
    train = (cyc * 2 + phase) * k + dev  # one id per (cycle, direction, device)
    slot = train * top + reads.pulse
    _, first = np.unique(slot, return_index=True)
    is_first = np.zeros(slot.size, dtype=bool)
    is_first[first] = True
    data = {s: np.full((n_cyc, last[s] + 1, k), np.nan) for s in (1, -1)}
    for sign in (1, -1):
        sel = is_first & (reads.direction == sign)
        data[sign][cyc[sel], reads.pulse[sel], dev[sel]] = reads.conductance_s[sel]
    # Repeated reads of unchanged devices: extra reads at each train's last pulse count.
    train_end = np.full(n_cyc * 2 * k, -1)
    np.maximum.at(train_end, train, reads.pulse)
    extra = ~is_first & (reads.pulse == train_end[train])
    per_train = np.bincount(train[extra], minlength=train_end.size)
    sizes = np.bincount(per_train[per_train > 0])
    reps = int(np.argmax(sizes)) if sizes.size else 0
    repeats = np.full((n_cyc, 2, max(reps, 1), k), np.nan)
    if reps:
        use = extra & (per_train[train] == reps)
        idx = np.flatnonzero(use)
        idx = idx[np.argsort(train[idx], kind="stable")]  # file order within each train
        rank = np.arange(idx.size) % reps
        repeats[cyc[idx], phase[idx], rank, dev[idx]] = reads.conductance_s[idx]
    traces = Traces(
        ltp=data[1],
        ltd=data[-1],
        repeats=repeats,
        rows=np.arange(k, dtype=np.int64),
        cols=np.zeros(k, dtype=np.int64),
    )
    return TraceData(
        traces=traces,
        devices=names,
        pulses=pulses,
        has_repeats=reps > 0,
        rows_read=len(reads.device),
    )
