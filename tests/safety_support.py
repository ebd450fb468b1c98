"""Observers of what reaches a device, independent of the code under test's own bookkeeping.

- `RecordingCrossbar`: the real simulated array, noting every plan its engine applies and
  the read voltage of every read (the simulator itself, or the array behind an emulator).
- `visa_stream` / `serial_stream`: what a dry-run command stream puts on the wire, parsed
  from the SCPI units and the pulse-board frames themselves.
- `protocol_file`: a library protocol with fields replaced, written to a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from drivers.emu_array import UNBOUNDED
from protocols.plan import PulsePlan
from protocols.protocol_file import library_dir
from sim_backend import SimulatedCrossbar

PATTERNS = "[a]\n#.#.\n#..#\n\n[b]\n.##.\n##..\n"  # 8 units: an 8 x 16 array


@dataclass
class Seen:
    """Every pulse shape (amplitude, width, bias) and read voltage a device was exposed to."""

    pulses: list[tuple[float, float, str]] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)

    @property
    def top_set_v(self) -> float:
        return max((a for a, _, _ in self.pulses if a > 0), default=0.0)

    @property
    def top_reset_v(self) -> float:
        return max((-a for a, _, _ in self.pulses if a < 0), default=0.0)

    @property
    def top_width_s(self) -> float:
        return max((w for _, w, _ in self.pulses), default=0.0)

    def half_select_v(self) -> float:
        """The largest voltage a half-selected device saw (V/2 or V/3 of a biased pulse)."""
        div = {"v2": 2.0, "v3": 3.0}
        return max((abs(a) / div[b] for a, _, b in self.pulses if b in div), default=0.0)


class RecordingCrossbar(SimulatedCrossbar):
    """The simulated array, recording what its engine receives (one record shared per class
    attribute `seen`, so a run that builds the array itself can be observed)."""

    seen = Seen()

    def _apply(self, plan: PulsePlan) -> None:
        for g in plan.groups:
            if g.total:
                self.seen.pulses.append((g.shape.amplitude_v, g.shape.width_s, plan.bias))
        super()._apply(plan)

    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        self.seen.reads.append(getattr(self, "read_v", float("nan")))
        return super()._read(rows, cols)


def recording_array(rows: int, cols: int, preset: str = "epiram", seed: int = 0) -> Any:
    """An emulator's array (no limits of its own, like a physical one) that records."""
    array = RecordingCrossbar(rows, cols, preset=preset, seed=seed)
    array.limits = UNBOUNDED
    return array


def visa_stream(text: str) -> Seen:
    """Pulses fired (`:INIT`: peak - base, width) and read voltages (`:MEAS:CURR?` at the DC
    level) of a VISA dry-run stream."""
    seen = Seen()
    base = peak = 0.0
    width = 0.0
    for line in text.splitlines():
        if not line.startswith("smu > "):
            continue
        for unit in line.removeprefix("smu > ").split(";"):
            head, _, arg = unit.strip().partition(" ")
            if head == ":SOUR:VOLT":
                base = float(arg)
            elif head == ":SOUR:VOLT:TRIG":
                peak = float(arg)
            elif head == ":SOUR:PULS:WIDT":
                width = float(arg)
            elif head == ":INIT" and peak != base:
                seen.pulses.append((peak - base, width, "none"))
            elif head == ":MEAS:CURR?":
                seen.reads.append(base)
    return seen


def serial_stream(text: str) -> Seen:
    """Pulse shapes staged on the pulse board (`SHAPE` frames, with their batch's bias)."""
    seen = Seen()
    bias: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("board > "):
            continue
        body = line.removeprefix("board > ").split("*")[0].split(" ")[1:]
        if body[0] == "BEGIN":
            bias[body[1]] = body[3]
        elif body[0] == "SHAPE":
            seen.pulses.append((float(body[3]), float(body[4]), bias[body[1]]))
    return seen


def protocol_file(tmp: Path, base: str = "taox_hfox", **changes: Any) -> Path:
    """A library protocol with top-level sections updated (dicts merge one level deep)."""
    data = yaml.safe_load((library_dir() / f"{base}.yaml").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and "kind" not in value:
            data[key].update(value)
        else:
            data[key] = value
    path = tmp / f"{base}-{len(list(tmp.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def patterns_file(tmp: Path) -> Path:
    path = tmp / "patterns.txt"
    path.write_text(PATTERNS)
    return path
