"""The Keysight B2900 SMU as the station's pulse source (channel 1, pulse mode).

A train is `:TRIG:ALL:COUN n` timer-paced pulses fired by `:INIT`; its `*OPC?` answers
before the train has ended, so the driver then waits for the trigger system to be idle
(`:IDLE1:ALL?`) and checks the number of pulses the reading buffer counted
(`:TRAC:POIN:ACT?`), one reading per pulse, cleared at the start of each batch. When a
train's fate is unknown after a link failure, the count says how many pulses were
delivered and only the rest are sent: none is lost or sent twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from drivers import scpi as S
from drivers.errors import IdentityError, InstrumentError, LinkError, LinkLost
from drivers.pulse_source import PulseSource, Reading
from drivers.visa_link import Link, parsed

log = logging.getLogger(__name__)

POLL_S = 0.001


class B2900Source(PulseSource):
    """`PulseSource` over a B2900-series SMU."""

    kind = "b2900"
    pulse_row = S.MATRIX_ROW_SOURCE
    read_row = S.MATRIX_ROW_SOURCE
    max_abs_v = S.SMU_MAX_ABS_V
    max_width_s = S.SMU_MAX_WIDTH_S

    def __init__(
        self, link: Link, compliance_a: float, *, min_width_s: float = S.SMU_MIN_WIDTH_S
    ) -> None:
        super().__init__(link, compliance_a)
        self.min_width_s = float(min_width_s)
        self._shape: tuple[float, float] | None = None
        self._in_epoch = 0
        link.on_resync = self._forget_shape

    def _forget_shape(self) -> None:
        """After a reconnect the cached pulse shape is not trusted."""
        self._shape = None

    # -- start-up -------------------------------------------------------------------------
    def open(self) -> None:
        link = self.link
        link.clear_at_open()
        self.idn = link.retry(lambda: link.query(S.IDN), resync=False)
        if not S.SMU_MODEL_RE.match(self.idn):
            raise IdentityError(f"{link.name} answers *IDN? with {self.idn!r}, not a B2900 SMU")

    def setup(self) -> None:
        link = self.link
        link.retry(lambda: link.expect(S.smu_reset(), "1"))
        link.retry(lambda: link.expect(S.smu_configure(self.compliance_a), "1"))
        self.check_errors()

    def output_on(self) -> None:
        self.link.retry(lambda: self.link.expect(S.smu_output_on(), "1"))
        self.check_errors()

    def check_errors(self) -> None:
        errors = []
        for _ in range(S.SMU_ERROR_QUEUE_DEPTH):
            code, text = self.link.retry(lambda: parsed(S.parse_error, self.link.query(S.SYST_ERR)))
            if code == 0:
                break
            errors.append(f"{code} {text}")
        if errors:
            shown = "; ".join(errors[:4]) + (
                f"; ... ({len(errors)} entries)" if len(errors) > 4 else ""
            )
            raise InstrumentError(f"SMU error queue: {shown}")

    # -- pulses ----------------------------------------------------------------------------
    def begin_batch(self) -> None:
        self.link.retry(lambda: self.link.expect(S.smu_epoch(), "1"))
        self._in_epoch = 0

    def end_batch(self) -> None:
        self.check_errors()

    def _idle_count(self, deadline: float, expect_done_at: float) -> int:
        """Wait for the trigger system to be idle; the pulses counted in this epoch."""
        wait = expect_done_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        while True:
            idle, count = self.link.retry(
                lambda: parsed(S.parse_idle_count, self.link.query(S.smu_idle_count()))
            )
            if idle:
                return count
            if time.monotonic() > deadline:
                raise InstrumentError(f"{self.name}: the pulse train has not ended in time")
            time.sleep(POLL_S)

    def _settled_count(self, deadline: float) -> int:
        """After a failure: idle, and the same count twice (a guard on a noisy link)."""
        previous = self._idle_count(deadline, 0.0)
        for _ in range(self.link.retries):
            current = self._idle_count(deadline, 0.0)
            if current == previous:
                return current
            previous = current
        raise LinkLost(f"{self.name}: the pulse count does not settle")

    def fire(self, count: int, amplitude_v: float, width_s: float) -> None:
        """Deliver `count` pulses exactly once, then wait until the train has ended."""
        if self._in_epoch + count > S.SMU_TRACE_CAPACITY:
            self.begin_batch()
        before = self._in_epoch
        target = before + count
        remaining = count
        period = S.pulse_period(width_s)
        for _ in range(self.link.retries):
            changed = self._shape != (amplitude_v, width_s)
            message = S.smu_train(
                remaining,
                amplitude_v if changed else None,
                width_s if changed else None,
                period if changed else None,
            )
            duration = remaining * period
            deadline = time.monotonic() + self.link.timeout_s + 2.0 * duration
            try:
                self.link.expect(message, "1", self.link.timeout_s + 1.5 * duration)
                self._shape = (amplitude_v, width_s)
            except LinkError as exc:
                log.debug("%s: train of %d: %s", self.name, remaining, exc)
                self.link.retry(self.link.resync, resync=False)
                self.check_errors()
                done = self._settled_count(deadline)
                if done > target or done < before:
                    raise InstrumentError(
                        f"SMU counted {done} pulses in this batch, expected between "
                        f"{before} and {target}"
                    ) from exc
                remaining = target - done
                if remaining == 0:
                    break
                continue
            done = self._idle_count(deadline, time.monotonic() + duration)
            if done != target:
                raise InstrumentError(
                    f"SMU delivered {done - before} of {remaining} pulses (triggers lost: "
                    f"the period {period:g} s is shorter than what one pulse takes)"
                )
            break
        else:
            raise LinkLost(f"{self.name}: pulse train not confirmed after {self.link.retries}")
        self._in_epoch = target

    # -- reads ---------------------------------------------------------------------------
    def measure(self, read_v: float) -> Reading:
        reply = self.link.retry(lambda: self.link.query(S.smu_read(read_v)))
        current, tripped = parsed(S.parse_read, reply)
        if abs(current) >= 9.9e37:
            return Reading(current, "over the measurement range")
        if tripped or abs(current) >= 0.999 * self.compliance_a:
            return Reading(current, f"current compliance {self.compliance_a:g} A")
        return Reading(current)

    # -- shutdown ------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.link.retry(lambda: self.link.expect(S.smu_shutdown(), "1"))

    def details(self) -> dict[str, Any]:
        return {**super().details(), "smu": self.idn}
