"""The Keithley 707B/708B switch matrix of the VISA station, as its driver sees it.

Every close is checked in the same exchange (the error count after it): a 707B that
refuses an `exclusiveclose` changes nothing and still answers `*OPC?` with 1, so without
the check the next pulses would reach the device connected before. At start-up the matrix
is put in a known state (no prompts, no echoed errors, an empty error queue) and the cards
are read from the instrument instead of assumed.
"""

from __future__ import annotations

import math

from drivers import scpi as S
from drivers.errors import GarbledReply, IdentityError, InstrumentError
from drivers.visa_link import Link, parsed
from protocols.errors import InputError

#: Slots of each model (the model comes from the identity reply).
SLOTS = {"707B": 6, "708B": 1}


class Matrix:
    """Connect one crossbar device at a time; every relay change is verified."""

    def __init__(self, link: Link, mapping: S.MatrixMap) -> None:
        self.link = link
        self.map = mapping
        self.idn = ""
        self.cards: list[str] = []
        self.identified = False

    def open(self, rows_needed: str) -> None:
        """Identify, reach a known state, and check the cards hold the array's lines on the
        matrix rows in `rows_needed` (e.g. 'ABC')."""
        link = self.link
        link.clear_at_open()
        self.idn = link.retry(lambda: link.query(S.IDN), resync=False)
        if not S.MATRIX_MODEL_RE.match(self.idn):
            raise IdentityError(f"{link.name} answers *IDN? with {self.idn!r}, not a 707B matrix")
        self.identified = True
        # prompts may still be on, and errors echoed: read through to the '1'
        link.retry(lambda: link.query_until(S.matrix_init(), "1", 64))
        model = "708B" if "708B" in self.idn.upper() else "707B"
        slots = min(SLOTS[model], self.map.slots)
        self.cards = link.retry(lambda: link.query_lines(S.matrix_cards(slots), slots))
        self._check_cards(rows_needed)

    def _check_cards(self, rows_needed: str) -> None:
        needed = math.ceil(self.map.lines / self.map.columns_per_slot)
        if needed > len(self.cards):
            raise InputError(
                f"a {self.map.rows}x{self.map.cols} array needs {self.map.lines} matrix columns "
                f"({needed} cards of {self.map.columns_per_slot}); the matrix "
                f"{self.idn.split(',')[1].strip()} has {len(self.cards)} slots"
            )
        top_row = max(ord(r) - ord("A") + 1 for r in rows_needed)
        for slot in range(1, needed + 1):
            idn = self.cards[slot - 1]
            size = S.card_size(idn)
            if size is None or size[0] < top_row or size[1] < self.map.columns_per_slot:
                raise InputError(
                    f"the array needs a matrix card with rows {', '.join(rows_needed)} and "
                    f"{self.map.columns_per_slot} columns in slot {slot}; slot {slot} holds "
                    f"{idn.strip()!r}"
                )

    def _errors(self, count: int) -> list[str]:
        replies = self.link.query_lines(S.matrix_errors(count), count)
        out = []
        for reply in replies:
            code, text = parsed(S.parse_matrix_error, reply)
            out.append(f"{code} {text}")
        return out

    def _switch(self, message: list[str], what: str) -> None:
        def once() -> None:
            count_text, done = self.link.query_lines(message, 2)
            if done != "1":
                raise GarbledReply(f"{self.link.name}: expected '1', got {done[:40]!r}")
            count = parsed(S.parse_tsp_int, count_text)
            if count:
                errors = self._errors(count)
                raise InstrumentError(
                    f"{self.link.name} refused to {what}: {'; '.join(errors)}; the relays are "
                    "as they were, so nothing is pulsed"
                )

        self.link.retry(once)

    def connect(self, row: int, col: int, source_row: str) -> None:
        """Connect device (row, col) to the source on `source_row`, and nothing else."""
        self._switch(
            S.matrix_connect(self.map, row, col, source_row),
            f"connect device ({row}, {col}) [{self.map.device(row, col, source_row)}]",
        )

    def release(self) -> None:
        """Open every relay."""
        self._switch(S.matrix_release(), "open every relay")

    def close(self) -> None:
        self.link.close()
