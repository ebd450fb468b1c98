"""The ArC TWO's fixed facts, written once for its backend and the pyarc2 double.

Sources: pyarc2 `docs/overview.rst` (channel roles), libarc2 `src/instrument.rs`
(`ALL_BITS`, `ALL_WORDS`, `set_channel_range`, the 40 ns clamp and the 500 ms fast/slow
split of `pulse_one`), libarc2 `src/registers.rs` (10 ns timing steps).
"""

from __future__ import annotations

#: 64 channels; bit-line channels are the rows, word-line channels the columns, in order.
CHANNELS = 64
BIT_CHANNELS: tuple[int, ...] = (*range(0, 16), *range(32, 48))
WORD_CHANNELS: tuple[int, ...] = (*range(16, 32), *range(48, 64))
ROW_OF = {ch: i for i, ch in enumerate(BIT_CHANNELS)}
COL_OF = {ch: i for i, ch in enumerate(WORD_CHANNELS)}
BOARD = (32, 32)

#: Swing of one channel per output range, V (each end of a differential pulse takes V/2).
RANGE_V = {"STD": 10.0, "EXT": 20.0}

#: Pulse timing: shorter pulses are stretched to 40 ns; 10 ns steps; from 500 ms on the slow
#: path holds a pulse 30 us longer.
MIN_NANOS = 40
NANOS_STEP = 10
SLOW_NANOS = 500_000_000
SLOW_EXTRA_NANOS = 30_000
