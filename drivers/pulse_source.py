"""What the VISA station needs from its pulse source, whichever instrument it is.

The station (drivers/visa_backend.py) connects one device at a time through the matrix and
asks its source to fire a train of pulses on it, or to measure its current at a read
voltage. A dialect implements this contract for one instrument: the Keysight B2900 SMU
(drivers/source_b2900.py) or the Keithley 4200A-SCS with a 4225-PMU
(drivers/source_4200a.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from drivers.visa_link import Link
from protocols.errors import InputError


@dataclass(frozen=True)
class Reading:
    """A read: the current, or why the instrument's answer is not a measurement of the
    device (compliance, overflow); a reading with a problem never becomes a conductance."""

    current_a: float
    problem: str | None = None


class PulseSource(ABC):
    """One pulse-and-read instrument on the station's matrix."""

    #: Short name of the dialect (the `pulse_source` backend option).
    kind: str = ""
    #: Matrix rows the source's pulse and read outputs are wired to.
    pulse_row: str = "A"
    read_row: str = "A"
    #: What the instrument can fire (checked before the first byte of a plan).
    min_width_s: float = 0.0
    max_width_s: float = 0.0
    max_abs_v: float = 0.0

    def __init__(self, link: Link, compliance_a: float) -> None:
        self.link = link
        self.compliance_a = float(compliance_a)
        self.idn = ""

    @property
    def name(self) -> str:
        return self.link.name

    @property
    def model(self) -> str:
        parts = self.idn.split(",")
        return parts[1].strip() if len(parts) > 1 else self.idn.strip()

    def check_shape(self, k: int, amplitude_v: float, width_s: float) -> None:
        """Refuse a pulse the instrument cannot fire (an `InputError` naming the group)."""
        if abs(amplitude_v) > self.max_abs_v:
            raise InputError(
                f"group {k}: amplitude {amplitude_v:g} V is beyond the {self.kind} source's "
                f"±{self.max_abs_v:g} V"
            )
        if width_s > self.max_width_s:
            raise InputError(
                f"group {k}: width {width_s:g} s is above the {self.kind} source's maximum "
                f"pulse width {self.max_width_s:g} s"
            )
        if width_s < self.min_width_s:
            raise InputError(
                f"group {k}: width {width_s:g} s is below the {self.kind} source's minimum "
                f"pulse width {self.min_width_s:g} s"
            )

    @abstractmethod
    def open(self) -> None:
        """Clear the link and check the instrument's identity (nothing is set yet)."""

    @abstractmethod
    def setup(self) -> None:
        """Put the instrument in a known state, 0 V, output off."""

    @abstractmethod
    def output_on(self) -> None:
        """Turn the output on at 0 V (the matrix has every relay open by then)."""

    @abstractmethod
    def begin_batch(self) -> None:
        """Before the first train of a plan."""

    @abstractmethod
    def fire(self, count: int, amplitude_v: float, width_s: float) -> None:
        """Fire `count` pulses on the connected device; return once the source is idle at
        0 V, so that the matrix may switch."""

    @abstractmethod
    def end_batch(self) -> None:
        """After the last train of a plan: the instrument's errors, if any, are raised."""

    @abstractmethod
    def measure(self, read_v: float) -> Reading:
        """The current of the connected device at `read_v`; the source is back at 0 V
        when this returns."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop a running train, 0 V, output off (the matrix opens after this)."""

    def details(self) -> dict[str, Any]:
        return {"source": self.idn, "pulse_source": self.kind}

    def close(self) -> None:
        self.link.close()
