"""Fault injection for the emulators: latency, dropped replies, garbled bytes, disconnects.

One decision per request, drawn from a seeded generator so a faulty run can be replayed.
A latency *spike* delays a reply past a typical timeout, which is how a late reply (the
stale-reply hazard of a real bus) is produced.
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class FaultConfig(BaseModel):
    """Per-request fault rates (probabilities in [0, 1]) and timings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_s: float = Field(default=0.0, ge=0.0, le=10.0, description="every reply waits this")
    spike_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="late-reply probability")
    spike_s: float = Field(default=0.3, ge=0.0, le=60.0, description="extra delay of a spike")
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="reply never sent")
    garble_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="bytes corrupted")
    disconnect_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="link dropped")
    seed: int = 0

    @property
    def any(self) -> bool:
        return (self.spike_rate + self.drop_rate + self.garble_rate + self.disconnect_rate) > 0


class Fault(enum.Enum):
    NONE = "none"
    SPIKE = "spike"
    DROP = "drop"
    GARBLE_IN = "garble-in"
    GARBLE_OUT = "garble-out"
    DISCONNECT_BEFORE = "disconnect-before"
    DISCONNECT_AFTER = "disconnect-after"


class FaultInjector:
    """Draws the fault of each request; counts what it injected."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng(config.seed)
        self.injected: dict[Fault, int] = {f: 0 for f in Fault}

    def draw(self, *, inbound_garble: bool = True) -> Fault:
        c = self.config
        if not c.any:
            return Fault.NONE
        u = float(self._rng.random())
        edges = (
            (c.disconnect_rate, None),
            (c.drop_rate, Fault.DROP),
            (c.garble_rate, None),
            (c.spike_rate, Fault.SPIKE),
        )
        acc = 0.0
        fault = Fault.NONE
        for k, (rate, kind) in enumerate(edges):
            acc += rate
            if u < acc:
                if k == 0:
                    before = self._rng.random() < 0.5
                    kind = Fault.DISCONNECT_BEFORE if before else Fault.DISCONNECT_AFTER
                elif k == 2:
                    inbound = inbound_garble and self._rng.random() < 0.5
                    kind = Fault.GARBLE_IN if inbound else Fault.GARBLE_OUT
                assert kind is not None
                fault = kind
                break
        self.injected[fault] += 1
        return fault

    def garble(self, data: bytes, *, printable_safe: bool) -> bytes:
        """Corrupt one to three bytes of `data` (never the final terminator).

        With `printable_safe=False` the replacement bytes are outside 7-bit ASCII, the way a
        wrong baud rate or a bad cable corrupts text, so a strict parser notices.
        """
        if len(data) <= 1:
            return b"\xff" + data
        out = bytearray(data)
        body = len(out) - 1 if out.endswith(b"\n") else len(out)
        for _ in range(int(self._rng.integers(1, 4))):
            i = int(self._rng.integers(0, max(body, 1)))
            if printable_safe:
                out[i] = (out[i] + int(self._rng.integers(1, 255))) % 256
            else:
                out[i] = int(self._rng.integers(0x80, 0x100))
        return bytes(out)


def crc16_blind(head: bytes, groups: Sequence[Sequence[int]]) -> bytes | None:
    """`head` with some of the bit `groups` flipped so that its CRC-16/CCITT does not change:
    line noise a 16-bit frame check cannot see (bit 0 is the first bit sent, the MSB of the
    first byte). Each chosen group is flipped whole; None when no nonempty choice cancels.

    CRC is linear: flipping bits changes the checksum by the XOR of each bit's own
    contribution, so a set of groups whose contributions XOR to zero is invisible. Found
    by Gaussian elimination over GF(2) on the 16-bit contributions.
    """
    n = len(head)

    def contribution(bits: Sequence[int]) -> int:
        flip = bytearray(n)
        for i in bits:
            flip[i // 8] ^= 0x80 >> (i % 8)
        return binascii.crc_hqx(bytes(flip), 0)

    basis: dict[int, tuple[int, int]] = {}
    for j, bits in enumerate(groups):
        value, combo = contribution(bits), 1 << j
        while value:
            top = value.bit_length() - 1
            if top not in basis:
                basis[top] = (value, combo)
                break
            value ^= basis[top][0]
            combo ^= basis[top][1]
        if not value:  # a dependency: these groups cancel
            out = bytearray(head)
            for k, g in enumerate(groups):
                if combo >> k & 1:
                    for i in g:
                        out[i // 8] ^= 0x80 >> (i % 8)
            return bytes(out)
    return None


class BoardGlitches(BaseModel):
    """A pulse board whose own record disagrees with the host's: what the driver's
    consistency checks exist for (another host drove the board, a firmware bug, a board
    swapped behind the host's back). Unlike `FaultConfig`, nothing here is random: each
    glitch is a fixed lie the emulated board (`drivers.emu_board.BoardCore`) tells.

    The pulses themselves still reach the array as staged; only what the board reports of
    them is wrong, so a test can show that the driver notices before it trusts the report.
    """

    model_config = ConfigDict(extra="forbid")

    done_pulses_off: int = Field(
        default=0, description="DONE of an executed batch reports this many pulses too many"
    )
    last_batch_ahead: int = Field(
        default=0, ge=0, description="LAST? reports a batch this many numbers past the last one"
    )
    last_pulses_off: int = Field(
        default=0, description="LAST? reports this many pulses too many for the last batch"
    )
    lose_done: int = Field(
        default=0,
        ge=0,
        description="the DONE of the next this-many executed batches is never sent (the batch "
        "is applied and recorded; the host must ask the board what happened)",
    )

    @property
    def any(self) -> bool:
        return bool(
            self.done_pulses_off or self.last_batch_ahead or self.last_pulses_off or self.lose_done
        )
