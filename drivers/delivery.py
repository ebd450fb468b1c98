"""Delivery tracking: an optional backend capability for settling a plan after a crash.

A controller journals each plan before sending it and marks it applied afterwards. When the
process dies in between, the journal cannot say whether the plan reached the array. A
backend that numbers what it sends, and whose instrument remembers what it applied, can:

1. before the plan is sent, `delivery_ticket(plan)` names the instrument's units of
   delivery it will use (for the pulse board: consecutive batch numbers and the pulses of
   each); the controller journals the ticket with the intent;
2. after a restart, `delivery_status(ticket)` asks the instrument how many of those units it
   applied (all, a leading part, or none: units are applied in order);
3. `complete_delivery(plan, ticket)` sends only the units that were not applied, under their
   journaled numbers, so that no pulse is applied twice and none is lost.

Backends without the capability (the simulator restores snapshots instead; the VISA station
cannot tell which device a pulse count belongs to) simply do not implement these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from protocols.errors import InputError
from protocols.plan import PulsePlan

DeliveryState = Literal["applied", "partial", "none"]

TICKET_KIND = "board-batches"


@dataclass(frozen=True)
class Ticket:
    """Batches `first`, `first + 1`, ... of a plan, with the pulses of each."""

    first: int
    pulses: tuple[int, ...]

    @property
    def batches(self) -> tuple[int, ...]:
        return tuple(range(self.first, self.first + len(self.pulses)))

    def to_json(self) -> dict[str, Any]:
        return {"kind": TICKET_KIND, "first": self.first, "pulses": list(self.pulses)}

    @classmethod
    def from_json(cls, data: Any, where: str = "ticket") -> Ticket:
        """Parse a journaled ticket; anything unexpected is an error naming it."""
        if (
            not isinstance(data, dict)
            or data.get("kind") != TICKET_KIND
            or not isinstance(data.get("first"), int)
            or not isinstance(data.get("pulses"), list)
            or not all(isinstance(p, int) and p >= 0 for p in data["pulses"])
        ):
            raise InputError(f"{where}: not a pulse-board delivery ticket: {data!r}")
        return cls(int(data["first"]), tuple(int(p) for p in data["pulses"]))


@dataclass(frozen=True)
class Delivery:
    """How much of a ticket the instrument applied: its first `applied` batches."""

    ticket: Ticket
    applied: int

    @property
    def state(self) -> DeliveryState:
        if self.applied == len(self.ticket.pulses):
            return "applied"
        return "partial" if self.applied else "none"

    @property
    def applied_batches(self) -> tuple[int, ...]:
        return self.ticket.batches[: self.applied]

    @property
    def missing_batches(self) -> tuple[int, ...]:
        return self.ticket.batches[self.applied :]

    def describe(self) -> str:
        b = self.ticket.batches
        span = f"batch {b[0]}" if len(b) == 1 else f"batches {b[0]}-{b[-1]}"
        if self.state == "applied":
            return f"{span} applied before the interruption"
        if self.state == "none":
            return f"{span} not applied; sent now"
        done, missing = self.applied_batches, self.missing_batches
        return (
            f"{span} partly applied (up to {done[-1]}); sent now: {missing[0]}-{missing[-1]}"
            if len(missing) > 1
            else f"{span} partly applied (up to {done[-1]}); sent now: {missing[0]}"
        )


@runtime_checkable
class TracksDelivery(Protocol):
    """The capability: a backend that can say how much of a journaled plan it applied."""

    def delivery_ticket(self, plan: PulsePlan) -> Ticket: ...

    def delivery_status(self, ticket: Ticket) -> Delivery: ...

    def complete_delivery(self, plan: PulsePlan, ticket: Ticket) -> Delivery: ...
