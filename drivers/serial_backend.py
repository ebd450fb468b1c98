"""A crossbar behind a pulse board on a serial line (protocol: docs/serial-protocol.md).

Pulses go row-wise: a batch is staged with one ROW frame per non-empty row of each pulse
group and applied atomically by EXEC, so a training presentation costs O(rows) round
trips instead of one per pulse. Every batch carries a number; when the fate of an EXEC is
unknown (timeout, garbled reply, lost link) the driver asks the board which batch it
applied last, so a batch is applied exactly once however often the link fails.

A plan with more groups than a batch holds (`batch_groups`, at most the board's 64) goes as
consecutive batches. The backend tracks delivery (drivers/delivery.py): it names a plan's
batch numbers before sending it, and after a crash asks the board how many of them it
applied and sends only the rest.

The port is reopened only when it is lost, never after a mere timeout: reopening an
Arduino-class board resets it, and a reset in the middle of a batch leaves some pulses
fired and none recorded. After a reopen nothing but `ID?` goes out until the board that
answers is the one identified at start-up (a replugged port may lead to another device).
After an EXEC whose reply did not come, the driver asks the board on the same link (STAT?,
then LAST?). Every staging reply echoes what the board
stored; an echo that differs from what was sent means the batch is staged again. The board
is armed with a watchdog (it goes SAFE when the host falls silent) and left SAFE at close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers import board as B
from drivers.delivery import Delivery, Ticket
from drivers.errors import (
    GarbledReply,
    IdentityError,
    InstrumentError,
    LinkError,
    LinkLost,
    LinkTimeout,
    RecordMismatch,
)
from drivers.transport import LineTransport
from protocols.backend import BackendError, BackendInfo, CrossbarBackend
from protocols.crashpoints import crash_point
from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan

log = logging.getLogger(__name__)


@dataclass
class BusStats:
    """What the bus cost: request frames sent, failures seen and recovered."""

    requests: int = 0
    retries: int = 0
    reconnects: int = 0
    stale_replies: int = 0
    resolved_by_last: int = 0
    echo_mismatches: int = 0
    keepalives: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class _Restage(Exception):
    """The board lost the staged batch (link reset): stage it again."""


class PulseBoardBackend(CrossbarBackend):
    """`CrossbarBackend` over the pulse-board line protocol."""

    _foreign = False  # set when a reopened port leads to another board

    def __init__(
        self,
        transport: LineTransport,
        rows: int,
        cols: int,
        *,
        limits: SafetyLimits | None = None,
        timeout_s: float = 1.0,
        retries: int = 20,
        per_pulse_s: float = 2e-6,
        g_range_s: tuple[float, float] | None = None,
        batch_groups: int = B.BOARD_MAX_GROUPS,
        watchdog_s: float = 5.0,
        read_v: float | None = None,
    ) -> None:
        try:  # the read voltage is checked against the limits there (protocols/backend.py)
            super().__init__(rows, cols, limits=limits, read_v=read_v)
        except BaseException:
            transport.close()
            raise
        if not 1 <= int(batch_groups) <= B.BOARD_MAX_GROUPS:
            transport.close()
            raise InputError(
                f"backend option batch_groups={batch_groups}: allowed 1..{B.BOARD_MAX_GROUPS}"
            )
        if self.read_v > B.BOARD_MAX_READ_V:
            transport.close()
            raise InputError(
                f"read voltage {self.read_v:g} V: the pulse board reads at most at "
                f"{B.BOARD_MAX_READ_V:g} V"
            )
        if not 0.0 <= watchdog_s * 1000 <= B.BOARD_MAX_WATCHDOG_MS:
            transport.close()
            raise InputError(
                f"backend option watchdog_s={watchdog_s}: allowed 0 (off) .."
                f" {B.BOARD_MAX_WATCHDOG_MS / 1000:g} s"
            )
        self.batch_groups = int(batch_groups)
        self.watchdog_s = float(watchdog_s)
        self.transport = transport
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.per_pulse_s = float(per_pulse_s)
        self.stats = BusStats()
        self._tag = 0
        self._reopened = False  # the port was reopened: who answers must be asked first
        try:
            self.identity = self._identify()
            self._wait_idle(self.timeout_s)  # a batch of a previous session may still run
            if g_range_s is None:
                lo, hi = B.parse_floats(self._call(B.RANGE), B.R_RANGE, 2)
                g_range_s = (lo, hi)
            self._g_range = g_range_s
            last, _ = B.parse_ints(self._call(B.LAST), B.R_LAST, 2)
            ms = round(self.watchdog_s * 1000)
            if self._call(B.watchdog(ms)) != B.ok_watchdog(ms):
                raise InstrumentError(f"{transport.name}: the board did not arm its watchdog")
            if self._call(B.read_voltage(self.read_v)) != B.ok_read_voltage(self.read_v):
                raise InstrumentError(f"{transport.name}: the board did not take its read voltage")
        except BaseException:
            transport.close()
            raise
        self._next_batch = last + 1

    # -- framing and retries ---------------------------------------------------------------
    def _exchange(self, body: str, timeout_s: float, nlines: int = 1) -> list[str]:
        """Send one frame and collect `nlines` reply bodies carrying its tag, all within
        `timeout_s` (one deadline for the whole reply, so a board that keeps sending stale
        lines cannot hold the driver)."""
        self._tag = (self._tag + 1) % 0x10000
        tag = B.tag_of(self._tag)
        self.stats.requests += 1
        self.transport.write_line(B.encode(tag, body))
        self.transport.round_trips += 1
        deadline = time.monotonic() + timeout_s
        bodies: list[str] = []
        while len(bodies) < nlines:
            left = deadline - time.monotonic()
            if left <= 0.0:
                raise LinkTimeout(
                    f"{self.transport.name}: no reply to {body.split(' ')[0]} within "
                    f"{timeout_s:g} s ({self.stats.stale_replies} stale lines so far)"
                )
            line = self.transport.read_line(left)
            try:
                rtag, rbody = B.decode(line)
            except B.FrameError as exc:
                raise GarbledReply(f"{self.transport.name}: {exc}") from exc
            if rtag == B.NO_TAG:
                raise GarbledReply(f"board could not read a request: {rbody}")
            if rtag != tag:
                self.stats.stale_replies += 1
                continue
            err = B.parse_error(rbody)
            if err is not None and err[0] != B.E_CRC:
                raise _BoardError(err[0], err[1])
            if err is not None:
                raise GarbledReply(f"board saw a corrupted request: {rbody}")
            bodies.append(rbody)
            if nlines > 1 and rbody.startswith(B.R_END):
                break
        return bodies

    def _recover(self, exc: LinkError, attempt: int) -> None:
        """After a failed exchange: drop what arrived; reopen only a port that is lost (a
        reopen may reset the board)."""
        self.stats.retries += 1
        log.debug("serial link: %s (attempt %d)", exc, attempt)
        if isinstance(exc, LinkLost):
            self._reopen()
        self.transport.discard_input()

    def _reopen(self) -> None:
        self.stats.reconnects += 1
        self._reopened = True
        self.transport.reopen()

    def _confirm_board(self, timeout_s: float) -> None:
        """After a reopen: the port may now lead to another device (a USB replug, a path
        the operating system gave to another board); nothing but `ID?` goes out until the
        board that answers is the one identified at start-up. Its watchdog and read
        voltage are set again (a board that reset has lost both)."""
        known: B.BoardIdentity | None = getattr(self, "identity", None)
        if known is None:  # still identifying: that check follows anyway
            self._reopened = False
            return
        try:
            again = B.parse_identity(self._exchange(B.ID, timeout_s)[0])
        except B.FrameError as exc:  # whatever answers, it is asked again
            raise GarbledReply(f"{self.transport.name}: {exc}") from None
        if again != known:
            self._foreign = True
            raise IdentityError(
                f"{self.transport.name}: after the port was reopened, {again.model} "
                f"{again.serial} ({again.rows}x{again.cols}) answers instead of {known.model} "
                f"{known.serial} ({known.rows}x{known.cols}): nothing more is sent to it"
            )
        self._reopened = False
        ms = round(self.watchdog_s * 1000)
        if ms and self._exchange(B.watchdog(ms), timeout_s)[0] != B.ok_watchdog(ms):
            raise InstrumentError(f"{self.transport.name}: the board did not arm its watchdog")
        volts = self.read_v
        if self._exchange(B.read_voltage(volts), timeout_s)[0] != B.ok_read_voltage(volts):
            raise InstrumentError(
                f"{self.transport.name}: the board did not take its read voltage again"
            )

    def _call(
        self, body: str, timeout_s: float | None = None, nlines: int = 1, retries: int = 0
    ) -> str:
        """An idempotent request, retried across link failures; returns the first reply."""
        return self._call_lines(body, timeout_s, nlines, retries)[0]

    def _call_lines(
        self, body: str, timeout_s: float | None = None, nlines: int = 1, retries: int = 0
    ) -> list[str]:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        last_exc: LinkError | None = None
        for attempt in range(retries or self.retries):
            try:
                if self._reopened:
                    self._confirm_board(timeout)
                return self._exchange(body, timeout, nlines)
            except _BoardError as err:
                raise err.as_instrument_error(body) from None
            except LinkError as exc:
                last_exc = exc
                self._recover(exc, attempt)
        raise LinkLost(
            f"{self.transport.name}: no valid reply to {body.split(' ')[0]} after "
            f"{retries or self.retries} attempts ({last_exc})"
        )

    def _identify(self) -> B.BoardIdentity:
        ident = B.parse_identity(self._call(B.ID))
        if not ident.model.startswith("MRNN-PB"):
            raise IdentityError(f"{self.transport.name}: {ident.model!r} is not a pulse board")
        if (ident.rows, ident.cols) != self.shape:
            raise IdentityError(
                f"{self.transport.name}: board array is {ident.rows}x{ident.cols}, "
                f"expected {self._rows}x{self._cols}"
            )
        return ident

    # -- pulses ----------------------------------------------------------------------------
    def _check_capability(self, groups: list[PulseGroup]) -> None:
        for k, group in enumerate(groups):
            amp, width = group.shape.amplitude_v, group.shape.width_s
            if abs(amp) > B.BOARD_MAX_ABS_V:
                raise InputError(
                    f"group {k}: amplitude {amp:g} V is beyond the board's ±{B.BOARD_MAX_ABS_V:g} V"
                )
            if not B.BOARD_MIN_WIDTH_S <= width <= B.BOARD_MAX_WIDTH_S:
                raise InputError(
                    f"group {k}: width {width:g} s is outside the board's "
                    f"[{B.BOARD_MIN_WIDTH_S:g}, {B.BOARD_MAX_WIDTH_S:g}] s"
                )
            if int(group.counts.max()) > B.BOARD_MAX_COUNT:
                raise InputError(f"group {k}: more than {B.BOARD_MAX_COUNT} pulses on a device")

    def _batches(self, plan: PulsePlan) -> list[list[PulseGroup]]:
        """The plan's non-empty groups, in order, `batch_groups` per batch."""
        groups = [g for g in plan.groups if g.total > 0]
        n = self.batch_groups
        return [groups[i : i + n] for i in range(0, len(groups), n)]

    def _apply(self, plan: PulsePlan) -> None:
        batches = self._batches(plan)
        self._check_capability([g for chunk in batches for g in chunk])
        for k, groups in enumerate(batches):
            if k:  # a test-only kill between two batches of one plan
                crash_point("plan.group")
            self._deliver(self._next_batch, groups, plan.bias)
            self._next_batch += 1

    def _deliver(self, batch: int, groups: list[PulseGroup], bias: str) -> None:
        """Stage and execute one batch, exactly once across link failures."""
        pulses = sum(g.total for g in groups)
        expected_s = sum(g.total * (g.shape.width_s + self.per_pulse_s) for g in groups)
        for attempt in range(self.retries):
            if attempt:  # the board says while it runs a batch: wait as long as it runs one
                self._wait_idle(self.timeout_s * self.retries + 2.0 * expected_s)
                if self._applied_already(batch, pulses):
                    return
            try:
                self._stage(batch, groups, bias)
                if self._execute(batch, pulses, expected_s):
                    return
            except _Restage:
                continue
        raise BackendError(f"batch {batch} could not be applied after {self.retries} tries")

    def _status(self) -> B.BoardStatus:
        return B.parse_status(self._call(B.STAT))

    def _wait_idle(self, within_s: float) -> None:
        """Until the board executes no batch (asked on the same link; it answers STAT?
        while it runs one)."""
        deadline = time.monotonic() + within_s
        while self._status().executing_batch:
            if time.monotonic() > deadline:
                raise InstrumentError(
                    f"{self.transport.name}: the board is still executing a batch after "
                    f"{within_s:g} s"
                )
            time.sleep(min(0.01, within_s / 10))

    # -- delivery tracking (drivers/delivery.py) -------------------------------------------
    def delivery_ticket(self, plan: PulsePlan) -> Ticket:
        """The batch numbers the next `apply(plan)` will use, with the pulses of each."""
        return Ticket(self._next_batch, tuple(sum(g.total for g in b) for b in self._batches(plan)))

    def delivery_status(self, ticket: Ticket) -> Delivery:
        """How many of the ticket's batches the board applied (`LAST?`; batches go in order)."""
        self._check_open()
        self._wait_idle(self.timeout_s)
        last, last_pulses = B.parse_ints(self._call(B.LAST), B.R_LAST, 2)
        final = ticket.first + len(ticket.pulses) - 1
        if last < ticket.first - 1 or last > final:
            raise RecordMismatch(
                f"board reports batch {last} applied last, but the journaled plan is batches "
                f"{ticket.first}-{final} and everything before it was applied: the board's "
                "record and the journal disagree (another board, or another host drove it)"
            )
        applied = last - ticket.first + 1
        if applied and last_pulses != ticket.pulses[applied - 1]:
            raise RecordMismatch(
                f"batch {last}: board applied {last_pulses} pulses, the journal expects "
                f"{ticket.pulses[applied - 1]}"
            )
        return Delivery(ticket, applied)

    def complete_delivery(self, plan: PulsePlan, ticket: Ticket) -> Delivery:
        """Send the batches of `ticket` the board has not applied, under their own numbers.

        Returns the state found before sending. The plan must be the journaled one (its
        batches must carry the ticket's pulse counts); the limits are checked as for apply.
        """
        found = self.delivery_status(ticket)
        batches = self._batches(plan)
        if tuple(sum(g.total for g in b) for b in batches) != ticket.pulses:
            raise InputError(
                f"plan does not split into the journaled batches {list(ticket.batches)} "
                f"(pulses {list(ticket.pulses)}): was batch_groups changed since the run began?"
            )
        missing = batches[found.applied :]
        if missing:
            rest = PulsePlan(
                rows=plan.rows,
                cols=plan.cols,
                groups=tuple(g for chunk in missing for g in chunk),
                bias=plan.bias,
            )
            self._next_batch = ticket.first + found.applied
            self.apply(rest)
        return found

    def _applied_already(self, batch: int, pulses: int) -> bool:
        last, last_pulses = B.parse_ints(self._call(B.LAST), B.R_LAST, 2)
        if last > batch:
            raise RecordMismatch(f"board reports batch {last} applied, ahead of this host")
        if last == batch:
            if last_pulses != pulses:
                raise RecordMismatch(
                    f"batch {batch}: board applied {last_pulses} pulses, expected {pulses}"
                )
            self.stats.resolved_by_last += 1
            return True
        return False

    def _staging_call(self, body: str, echo: str) -> None:
        """A staging request whose reply must echo exactly what the board stored."""
        try:
            reply = self._call(body)
        except InstrumentError as exc:
            if getattr(exc, "code", None) == B.E_BATCH:
                raise _Restage() from exc
            raise
        if reply != echo:  # the board stored something else: stage the batch again
            self.stats.echo_mismatches += 1
            log.warning("%s: sent %r, the board echoed %r", self.transport.name, body, reply)
            raise _Restage()

    def _stage(self, batch: int, groups: list[PulseGroup], bias: str) -> None:
        self._staging_call(B.begin(batch, len(groups), bias), B.ok_begin(batch, len(groups), bias))
        for k, group in enumerate(groups):
            amp, width, par = group.shape.amplitude_v, group.shape.width_s, group.parallel
            self._staging_call(
                B.shape(batch, k, amp, width, par), B.ok_shape(batch, k, amp, width, par)
            )
            nnz = np.count_nonzero(group.counts, axis=1)
            for r in np.flatnonzero(nnz):
                counts = group.counts[r]
                if nnz[r] == 1:
                    c = int(np.flatnonzero(counts)[0])
                    n = int(counts[c])
                    self._staging_call(
                        B.pulse(batch, k, int(r), c, n), B.ok_pulse(batch, k, int(r), c, n)
                    )
                else:
                    row = counts.tolist()
                    self._staging_call(
                        B.row(batch, k, int(r), row), B.ok_row(batch, k, int(r), sum(row))
                    )

    def _await_exec(self, batch: int, expected_s: float) -> str:
        """Send EXEC and wait for its DONE; while waiting longer than a third of the
        watchdog's time, a STAT? frame every so often tells the board the host is alive
        (its reply is dropped as a line with another tag)."""
        self._tag = (self._tag + 1) % 0x10000
        tag = B.tag_of(self._tag)
        self.stats.requests += 1
        self.transport.write_line(B.encode(tag, B.execute(batch)))
        self.transport.round_trips += 1
        now = time.monotonic()
        deadline = now + self.timeout_s + expected_s
        every = self.watchdog_s / 3.0 if self.watchdog_s > 0 else float("inf")
        keep = now + every
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise LinkTimeout(f"{self.transport.name}: no reply to EXEC {batch}")
            if now >= keep:
                self._tag = (self._tag + 1) % 0x10000
                self.transport.write_line(B.encode(B.tag_of(self._tag), B.STAT))
                self.stats.keepalives += 1
                keep = now + every
            try:
                line = self.transport.read_line(min(deadline, keep) - now)
            except LinkTimeout:
                continue
            try:
                rtag, rbody = B.decode(line)
            except B.FrameError as exc:
                raise GarbledReply(f"{self.transport.name}: {exc}") from exc
            if rtag == B.NO_TAG:
                raise GarbledReply(f"board could not read a request: {rbody}")
            if rtag != tag:
                self.stats.stale_replies += 1
                continue
            err = B.parse_error(rbody)
            if err is not None:
                raise _BoardError(err[0], err[1])
            return rbody

    def _execute(self, batch: int, pulses: int, expected_s: float) -> bool:
        """True when the board confirms the batch; False means 'ask the board and retry'.

        A failure here never reopens a port that still works: the board may be in the
        middle of the batch, and a reopen can reset it.
        """
        try:
            done = self._await_exec(batch, expected_s)
        except _BoardError as err:
            if err.code in (B.E_BATCH, B.E_CRC):
                return False
            raise err.as_instrument_error(B.EXEC) from None
        except LinkError as exc:
            self.stats.retries += 1
            if isinstance(exc, LinkLost):
                self._reopen()
            self.transport.discard_input()
            return False
        got_batch, got_pulses = B.parse_ints(done, B.R_DONE, 2)
        if got_batch != batch or got_pulses != pulses:
            raise RecordMismatch(
                f"board confirmed batch {got_batch} with {got_pulses} pulses, "
                f"expected batch {batch} with {pulses}"
            )
        return True

    # -- reads -----------------------------------------------------------------------------
    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        if rows.size == self._rows and np.array_equal(np.sort(rows), np.arange(self._rows)):
            full = self._read_array()
            return full[np.ix_(rows, cols)]
        wanted = np.unique(rows)
        values = {int(r): self._read_row(int(r)) for r in wanted}
        block = np.stack([values[int(r)] for r in rows]) if rows.size else np.zeros((0, self._cols))
        return block[:, cols]

    def _read_row(self, r: int) -> NDArray[np.float64]:
        def parse(body: str) -> NDArray[np.float64]:
            return np.array(B.parse_row_values(body, r, self._cols))

        return self._retry_parse(lambda: [self._call(B.read_row(r))], lambda b: parse(b[0]))

    def _read_array(self) -> NDArray[np.float64]:
        timeout = self.timeout_s + self._rows * self._cols * 2e-6

        def parse(bodies: list[str]) -> NDArray[np.float64]:
            if len(bodies) != self._rows + 1 or bodies[-1] != f"{B.R_END} {self._rows}":
                raise B.FrameError(f"array read returned {len(bodies)} lines")
            return np.array(
                [B.parse_row_values(bodies[r], r, self._cols) for r in range(self._rows)]
            )

        return self._retry_parse(
            lambda: self._call_lines(B.READ_ARRAY, timeout, self._rows + 1), parse
        )

    def _retry_parse(
        self,
        fetch: Callable[[], list[str]],
        parse: Callable[[list[str]], NDArray[np.float64]],
    ) -> NDArray[np.float64]:
        for attempt in range(self.retries):
            bodies = fetch()
            try:
                return parse(bodies)
            except B.FrameError as exc:
                self._recover(GarbledReply(str(exc)), attempt)
        raise LinkLost(f"{self.transport.name}: no well-formed read after {self.retries} tries")

    # -- description ---------------------------------------------------------------------
    def _info(self) -> BackendInfo:
        return BackendInfo(
            name=f"{self.identity.model} {self.identity.serial} on {self.transport.name}",
            kind="serial",
            rows=self._rows,
            cols=self._cols,
            g_min_s=self._g_range[0],
            g_max_s=self._g_range[1],
            supports_row_parallel=True,
            bias_schemes=B.BIAS_SCHEMES,
            min_width_s=B.BOARD_MIN_WIDTH_S,
            max_width_s=B.BOARD_MAX_WIDTH_S,
            max_abs_v=B.BOARD_MAX_ABS_V,
            details={
                "firmware": self.identity.firmware,
                "next_batch": self._next_batch,
                "round_trips": self.transport.round_trips,
            },
        )

    def _close(self) -> None:
        """Stop a running batch (ABORT) and leave the board SAFE (0 V, lines grounded). A
        board that cannot be reached any more goes SAFE by itself when its watchdog runs
        out. A port that leads to another board now gets nothing, not even ABORT."""
        if self._foreign:
            (log.info if self.watchdog_s > 0 else log.warning)(
                "closing: the port leads to another board; the run's board goes SAFE by its "
                "watchdog%s",
                f" after {self.watchdog_s:g} s of silence" if self.watchdog_s > 0 else " (off!)",
            )
            return
        try:
            self._call(B.ABORT, retries=3)
            if self._call(B.SAFE, retries=3) != B.ok_safe():
                raise InstrumentError("the board did not confirm SAFE")
        except LinkError as exc:
            if self.watchdog_s > 0:
                log.info(
                    "pulse board unreachable at close (%s); its watchdog makes it SAFE after "
                    "%g s of silence",
                    exc,
                    self.watchdog_s,
                )
            else:
                log.warning("closing the pulse board (it may not be SAFE): %s", exc)
        except (InstrumentError, IdentityError) as exc:
            log.warning("closing the pulse board (it may not be SAFE): %s", exc)
        finally:
            self.transport.close()

    @property
    def bus(self) -> dict[str, Any]:
        return {
            "round_trips": self.transport.round_trips,
            "requests": self.stats.requests,
            "retries": self.stats.retries,
            "reconnects": self.stats.reconnects,
            "stale_replies": self.stats.stale_replies,
        }


class _BoardError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"ERR {code} {text}")
        self.code = code
        self.text = text

    def as_instrument_error(self, request: str) -> InstrumentError:
        exc = InstrumentError(
            f"board refused {request.split(' ')[0]}: error {self.code} ({self.text})"
        )
        exc.code = self.code  # type: ignore[attr-defined]
        return exc
