"""One instrument of the VISA station on its line transport: queries, retries, resync.

A failed exchange (timeout, lost connection, garbled reply) leaves the instrument's state
unknown, so before the link is trusted again it is reopened and cleared: a reopen alone
does not empty the instrument's output queue on GPIB, USB-TMC, VXI-11 or HiSLIP, and a
late reply read as the answer to the next question is the worst kind of error (a wrong
value that looks right). The link is also cleared when it opens, since a previous session
may have left a reply unread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from drivers.errors import GarbledReply, LinkError, LinkLost
from drivers.transport import LineTransport

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Quiet time that ends the clear at open: output a previous session left is already there.
OPEN_QUIET_S = 0.05


class Link:
    """Exchanges with one instrument, each with its own timeout, retried across failures."""

    def __init__(
        self,
        transport: LineTransport,
        *,
        timeout_s: float,
        retries: int,
        on_resync: Callable[[], None] | None = None,
    ) -> None:
        self.transport = transport
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.on_resync = on_resync
        self.recoveries = 0

    @property
    def name(self) -> str:
        return self.transport.name

    # -- exchanges -------------------------------------------------------------------------
    def _send(self, message: str | list[str]) -> None:
        lines = [message] if isinstance(message, str) else message
        # Several lines go out in one write: a second small write would wait for the
        # acknowledgement of the first (Nagle), costing milliseconds per exchange.
        self.transport.write_line("\n".join(lines).encode("ascii"))
        self.transport.round_trips += 1

    def _line(self, timeout_s: float) -> str:
        raw = self.transport.read_line(timeout_s)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise GarbledReply(f"{self.name}: non-ASCII reply {raw[:40]!r}") from exc

    def query(self, message: str | list[str], timeout_s: float | None = None) -> str:
        """Send and return the next reply line."""
        self._send(message)
        return self._line(self.timeout_s if timeout_s is None else timeout_s)

    def query_lines(
        self, message: str | list[str], n: int, timeout_s: float | None = None
    ) -> list[str]:
        """Send and return the next `n` reply lines."""
        self._send(message)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        return [self._line(timeout) for _ in range(n)]

    def query_until(
        self, message: str | list[str], last: str, max_lines: int, timeout_s: float | None = None
    ) -> list[str]:
        """Send and read lines up to and including `last` (what came before it is returned
        too; more than `max_lines` is a garbled stream)."""
        self._send(message)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        seen: list[str] = []
        for _ in range(max_lines):
            line = self._line(timeout)
            seen.append(line)
            if line == last:
                return seen
        raise GarbledReply(f"{self.name}: no {last!r} within {max_lines} lines: {seen[:4]}")

    def expect(self, message: str | list[str], reply: str, timeout_s: float | None = None) -> None:
        got = self.query(message, timeout_s)
        if got != reply:
            raise GarbledReply(f"{self.name}: expected {reply!r}, got {got[:40]!r}")

    # -- recovery --------------------------------------------------------------------------
    def clear(self, quiet_s: float | None = None) -> None:
        """Empty whatever the instrument may still send. After a failure the quiet wait is
        the link timeout (at most 0.5 s), so that a late reply cannot outlast it."""
        self.transport.clear(min(self.timeout_s, 0.5) if quiet_s is None else quiet_s)

    def clear_at_open(self) -> None:
        self.clear(OPEN_QUIET_S)

    def resync(self) -> None:
        """After a failure: a fresh connection, emptied of anything sent before it."""
        self.recoveries += 1
        self.transport.reopen()
        self.clear()
        if self.on_resync is not None:
            self.on_resync()

    def retry(self, op: Callable[[], T], *, resync: bool = True) -> T:
        """Run `op`; after a link failure resynchronise and run it again."""
        last: LinkError | None = None
        for attempt in range(self.retries):
            try:
                if attempt and resync:
                    self.resync()
                elif attempt:
                    self.transport.reopen()
                    self.clear()
                return op()
            except LinkError as exc:
                last = exc
                log.debug("%s: %s (attempt %d)", self.name, exc, attempt)
        raise LinkLost(f"{self.name}: giving up after {self.retries} attempts ({last})")

    def close(self) -> None:
        self.transport.close()


def parsed(parse: Callable[[str], T], reply: str) -> T:
    """Parse a reply; a reply that does not parse is a garbled one (retried)."""
    try:
        return parse(reply)
    except ValueError as exc:
        raise GarbledReply(str(exc)) from exc
