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
)
from drivers.transport import LineTransport
from protocols.backend import BackendError, BackendInfo, CrossbarBackend
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
    extra: dict[str, int] = field(default_factory=dict)


class _Restage(Exception):
    """The board lost the staged batch (link reset): stage it again."""


class PulseBoardBackend(CrossbarBackend):
    """`CrossbarBackend` over the pulse-board line protocol."""

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
        read_v: float | None = None,
    ) -> None:
        super().__init__(rows, cols, limits=limits, read_v=read_v)
        if not 1 <= int(batch_groups) <= B.BOARD_MAX_GROUPS:
            transport.close()
            raise InputError(
                f"backend option batch_groups={batch_groups}: allowed 1..{B.BOARD_MAX_GROUPS}"
            )
        self.batch_groups = int(batch_groups)
        self.transport = transport
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.per_pulse_s = float(per_pulse_s)
        self.stats = BusStats()
        self._tag = 0
        try:
            self.identity = self._identify()
            if g_range_s is None:
                lo, hi = B.parse_floats(self._call(B.RANGE), B.R_RANGE, 2)
                g_range_s = (lo, hi)
            self._g_range = g_range_s
            last, _ = B.parse_ints(self._call(B.LAST), B.R_LAST, 2)
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
        self.stats.retries += 1
        log.debug("serial link: %s (attempt %d)", exc, attempt)
        if isinstance(exc, LinkLost) or attempt % 2 == 1:
            self.stats.reconnects += 1
            self.transport.reopen()
        self.transport.discard_input()

    def _call(self, body: str, timeout_s: float | None = None, nlines: int = 1) -> str:
        """An idempotent request, retried across link failures; returns the first reply."""
        return self._call_lines(body, timeout_s, nlines)[0]

    def _call_lines(self, body: str, timeout_s: float | None = None, nlines: int = 1) -> list[str]:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        last_exc: LinkError | None = None
        for attempt in range(self.retries):
            try:
                return self._exchange(body, timeout, nlines)
            except _BoardError as err:
                raise err.as_instrument_error(body) from None
            except LinkError as exc:
                last_exc = exc
                self._recover(exc, attempt)
        raise LinkLost(
            f"{self.transport.name}: no valid reply to {body.split(' ')[0]} after "
            f"{self.retries} attempts ({last_exc})"
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
        for groups in batches:
            self._deliver(self._next_batch, groups, plan.bias)
            self._next_batch += 1

    def _deliver(self, batch: int, groups: list[PulseGroup], bias: str) -> None:
        """Stage and execute one batch, exactly once across link failures."""
        pulses = sum(g.total for g in groups)
        exec_timeout = self.timeout_s + sum(
            g.total * (g.shape.width_s + self.per_pulse_s) for g in groups
        )
        for attempt in range(self.retries):
            if attempt and self._applied_already(batch, pulses):
                return
            try:
                self._stage(batch, groups, bias)
                if self._execute(batch, pulses, exec_timeout):
                    return
            except _Restage:
                continue
        raise BackendError(f"batch {batch} could not be applied after {self.retries} tries")

    # -- delivery tracking (drivers/delivery.py) -------------------------------------------
    def delivery_ticket(self, plan: PulsePlan) -> Ticket:
        """The batch numbers the next `apply(plan)` will use, with the pulses of each."""
        return Ticket(self._next_batch, tuple(sum(g.total for g in b) for b in self._batches(plan)))

    def delivery_status(self, ticket: Ticket) -> Delivery:
        """How many of the ticket's batches the board applied (`LAST?`; batches go in order)."""
        self._check_open()
        last, last_pulses = B.parse_ints(self._call(B.LAST), B.R_LAST, 2)
        final = ticket.first + len(ticket.pulses) - 1
        if last < ticket.first - 1 or last > final:
            raise InstrumentError(
                f"board reports batch {last} applied last, but the journaled plan is batches "
                f"{ticket.first}-{final} and everything before it was applied: the board's "
                "record and the journal disagree (another board, or another host drove it)"
            )
        applied = last - ticket.first + 1
        if applied and last_pulses != ticket.pulses[applied - 1]:
            raise InstrumentError(
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
            raise InstrumentError(f"board reports batch {last} applied, ahead of this host")
        if last == batch:
            if last_pulses != pulses:
                raise InstrumentError(
                    f"batch {batch}: board applied {last_pulses} pulses, expected {pulses}"
                )
            self.stats.resolved_by_last += 1
            return True
        return False

    def _staging_call(self, body: str) -> str:
        try:
            return self._call(body)
        except InstrumentError as exc:
            if getattr(exc, "code", None) == B.E_BATCH:
                raise _Restage() from exc
            raise

    def _stage(self, batch: int, groups: list[PulseGroup], bias: str) -> None:
        self._staging_call(B.begin(batch, len(groups), bias))
        for k, group in enumerate(groups):
            self._staging_call(
                B.shape(batch, k, group.shape.amplitude_v, group.shape.width_s, group.parallel)
            )
            nnz = np.count_nonzero(group.counts, axis=1)
            for r in np.flatnonzero(nnz):
                counts = group.counts[r]
                if nnz[r] == 1:
                    c = int(np.flatnonzero(counts)[0])
                    self._staging_call(B.pulse(batch, k, int(r), c, int(counts[c])))
                else:
                    self._staging_call(B.row(batch, k, int(r), counts.tolist()))

    def _execute(self, batch: int, pulses: int, timeout_s: float) -> bool:
        """True when the board confirms the batch; False means 'check LAST? and retry'."""
        try:
            done = self._exchange(B.execute(batch), timeout_s)[0]
        except _BoardError as err:
            if err.code == B.E_BATCH:
                return False
            raise err.as_instrument_error(B.EXEC) from None
        except LinkError as exc:
            self._recover(exc, 1)
            return False
        got_batch, got_pulses = B.parse_ints(done, B.R_DONE, 2)
        if got_batch != batch or got_pulses != pulses:
            raise InstrumentError(
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
