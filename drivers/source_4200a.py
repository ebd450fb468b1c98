"""The Keithley 4200A-SCS as the station's pulse source: a 4225-PMU fires, SMU1 reads.

Channel 1 of the PMU (through a 4225-RPM, on matrix row A) fires a burst of pulses with
`:PMU:EXECUTE` and the driver polls `:PMU:TEST:STATUS?` until it has ended; SMU1 (on matrix
row C) reads at a DC voltage with a current compliance and reports its status with every
reading. Over the LAN every message ends with NUL (drivers/kxci.py).

The PMU reports no count of the pulses it fired. A burst whose `:PMU:EXECUTE` was sent but
not confirmed may or may not have run: the driver waits for the PMU to be idle and stops
with an error instead of sending it again (at most once, never twice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from drivers import kxci as K
from drivers.errors import GarbledReply, IdentityError, InstrumentError, LinkError
from drivers.pulse_source import PulseSource, Reading
from drivers.scpi import MATRIX_ROW_READ_SMU, MATRIX_ROW_SOURCE
from drivers.visa_link import Link, parsed
from protocols.errors import InputError

log = logging.getLogger(__name__)

POLL_S = 0.001


class Pmu4200Source(PulseSource):
    """`PulseSource` over a 4200A-SCS with a 4225-PMU (pulses) and SMU1 (reads)."""

    kind = "4200a-pmu"
    pulse_row = MATRIX_ROW_SOURCE
    read_row = MATRIX_ROW_READ_SMU
    max_abs_v = K.PMU_MAX_ABS_V
    min_width_s = K.PMU_MIN_WIDTH_S
    max_width_s = K.PMU_MAX_PERIOD_S / 2.0 - 2.0 * K.PMU_EDGE_S

    def __init__(self, link: Link, compliance_a: float) -> None:
        if not K.SMU_MIN_COMPLIANCE_A <= compliance_a <= K.SMU_MAX_COMPLIANCE_A:
            raise InputError(
                f"limits compliance_a={compliance_a:g} A is outside the 4200A SMU's compliance "
                f"range [{K.SMU_MIN_COMPLIANCE_A:g}, {K.SMU_MAX_COMPLIANCE_A:g}] A"
            )
        super().__init__(link, compliance_a)
        self._amplitude: float | None = None
        self._width: float | None = None
        self._burst: int | None = None
        self.options = ""
        link.on_resync = self._forget

    def _forget(self) -> None:
        self._amplitude = self._width = None
        self._burst = None

    # -- wire ------------------------------------------------------------------------------
    def _ack(self, command: str) -> None:
        """A setting the instrument must acknowledge; a refusal is an `InstrumentError`."""
        reply = self.link.query(command)
        if reply == K.ACK:
            return
        code = K.parse_error_code(reply)
        if code is not None:
            meaning = K.ERROR_NAMES.get(code, "error")
            raise InstrumentError(f"4200A refused {command!r}: {code} ({meaning})")
        raise GarbledReply(f"{self.name}: expected ACK to {command!r}, got {reply[:40]!r}")

    def _setting(self, command: str) -> None:
        self.link.retry(lambda: self._ack(command))

    # -- start-up -------------------------------------------------------------------------
    def open(self) -> None:
        link = self.link
        link.clear_at_open()
        self.idn = link.retry(lambda: link.query(K.ID), resync=False)
        if not K.ID_RE.match(self.idn):
            raise IdentityError(f"{link.name} answers ID with {self.idn!r}, not a 4200A-SCS")
        self.options = link.retry(lambda: link.query(K.OPT))
        if not K.options_have_pmu(self.options):
            raise IdentityError(f"{link.name}: no 4225-PMU among the options {self.options!r}")

    def setup(self) -> None:
        self._setting(K.smu_force(0.0, self.compliance_a))
        for command in K.pmu_setup(self.compliance_a):
            self._setting(command)
        self._amplitude, self._width = 0.0, K.PMU_MIN_WIDTH_S
        self.end_batch()

    def output_on(self) -> None:
        self._setting(K.pmu_output(True))
        self.end_batch()

    # -- pulses ----------------------------------------------------------------------------
    def begin_batch(self) -> None:
        """Nothing to prepare: the PMU counts nothing."""

    def end_batch(self) -> None:
        """The serial-poll status byte: a refused command since the last poll is an error."""
        status = self.link.retry(lambda: parsed(int, self.link.query(K.SP)))
        if status & K.SP_SYNTAX_ERROR:
            raise InstrumentError(f"{self.name}: the 4200A reports a refused command (SP {status})")

    def _wait_idle(self, deadline: float) -> None:
        while True:
            running = self.link.retry(lambda: self.link.query(K.PMU_STATUS))
            if running == "0":
                return
            if running != "1":
                raise GarbledReply(f"{self.name}: status {running[:20]!r}")
            if time.monotonic() > deadline:
                raise InstrumentError(f"{self.name}: the PMU burst has not ended in time")
            time.sleep(POLL_S)

    def fire(self, count: int, amplitude_v: float, width_s: float) -> None:
        """Fire `count` pulses (bursts of at most `PMU_MAX_BURST`) at most once each."""
        if self._amplitude != amplitude_v:
            self._setting(K.pmu_train(amplitude_v))
            self._amplitude = amplitude_v
        if self._width != width_s:
            self._setting(K.pmu_times(width_s))
            self._width = width_s
        left = count
        while left:
            n = min(left, K.PMU_MAX_BURST)
            if self._burst != n:
                self._setting(K.pmu_burst(n))
                self._burst = n
            duration = n * K.pmu_period(width_s)
            deadline = time.monotonic() + self.link.timeout_s + 2.0 * duration
            try:
                self._ack(K.PMU_EXECUTE)
            except LinkError as exc:
                self.link.retry(self.link.resync, resync=False)
                self._wait_idle(deadline)
                raise InstrumentError(
                    f"{self.name}: the burst of {n} pulses was sent but not confirmed ({exc}); "
                    "the 4225-PMU counts no pulses, so whether it ran is unknown and it is "
                    "not sent again"
                ) from exc
            time.sleep(duration)
            self._wait_idle(deadline)
            left -= n

    # -- reads -----------------------------------------------------------------------------
    def measure(self, read_v: float) -> Reading:
        self._setting(K.smu_force(read_v, self.compliance_a))
        try:
            reply = self.link.retry(lambda: self.link.query(K.smu_measure()))
            status, current = parsed(K.parse_reading, reply)
        finally:
            self._setting(K.smu_force(0.0, self.compliance_a))
        if abs(current) > K.OVERFLOW or status != "N":
            return Reading(current, K.READING_STATUS.get(status, status))
        return Reading(current)

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """No abort command is known for a running PMU burst: wait for its end (bounded),
        then 0 V, output off; SMU1 to 0 V and off. A step that fails does not stop the
        next; the first failure is raised at the end."""
        steps: list[Callable[[], None]] = [
            lambda: self._wait_idle(time.monotonic() + self.link.timeout_s),
            lambda: self._setting(K.pmu_train(0.0)),
            lambda: self._setting(K.pmu_output(False)),
            lambda: self._setting(K.smu_force(0.0, self.compliance_a)),
            lambda: self._setting(K.smu_off()),
        ]
        first: Exception | None = None
        for step in steps:
            try:
                step()
            except (LinkError, InstrumentError) as exc:
                first = first or exc
        if first is not None:
            raise first

    def details(self) -> dict[str, Any]:
        return {**super().details(), "options": self.options}
