"""A crossbar on an ArC ONE board (protocol: drivers/arc1.py; guide: docs/instruments.md).

The backend drives an array of `rows x cols` devices on the board's 32 x 32 lines (word line
W = row + 1, bit line B = col + 1; `drivers.open_backend` wraps it in the block of devices a
command uses), tells the board that many lines in the init handshake, and reads them with
the read-all job (word-major float32 resistances, G = 1/R) or device by device.

Pulses: per device, a select (``02 W B``) and then one ``04 V width`` per pulse. The board
answers none of these, so after a plan the driver reads one device: the reply proves that
the board consumed every command before it (the stream is in order). A plan whose stream or
closing read fails is NOT sent again: the board cannot say how many of its pulses it
applied, so the error says so and a resumed run marks the plan unknown and reads every
device before it continues. Reads, which change nothing, are retried after a resync (reset
and init handshake again).

Everything the board cannot do is refused before the first byte: amplitudes beyond +-12 V,
widths outside 90 ns-10 s, devices outside the configured array, and, for a plan that names
no half-select scheme (the board always biases unselected lines at V/2 or V/3), a
half-select voltage above the limits' `max_half_select_v`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers import arc1 as A
from drivers.arc1_link import Arc1Link
from drivers.errors import GarbledReply, LinkError, LinkLost
from protocols.backend import BackendError, BackendInfo, CrossbarBackend
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits, check_plan
from protocols.plan import PulseGroup, PulsePlan, PulseShape

log = logging.getLogger(__name__)


class DeliveryUnknown(BackendError):
    """A plan's stream failed midway: some of its pulses may have been applied."""


@dataclass
class Arc1Stats:
    """What the bus cost and what went wrong."""

    reads: int = 0
    pulses: int = 0
    resyncs: int = 0
    read_retries: int = 0


class Arc1Backend(CrossbarBackend):
    """`CrossbarBackend` on an ArC ONE."""

    NAME = "ArC ONE"

    def __init__(
        self,
        link: Arc1Link,
        rows: int,
        cols: int,
        *,
        limits: SafetyLimits | None = None,
        g_range_s: tuple[float, float],
        read_v: float | None = None,
        read_mode: str = "tia4p",
        session: str = "local",
        half_select: str = "v2",
        cycles: int = 50,
        timeout_s: float = 2.0,
        retries: int = 5,
        reset_wait_s: float = 2.0,
        version_timeout_s: float = 2.0,
        write_delay_s: float = 1e-3,
        per_read_s: float = 1e-3,
        per_pulse_s: float = 1e-3,
    ) -> None:
        try:
            super().__init__(rows, cols, limits=limits, read_v=read_v)  # read_v: checked there
            if read_mode not in A.READ_MODES:
                raise InputError(f"read_mode {read_mode!r}: choose {', '.join(A.READ_MODES)}")
            if session not in A.SESSION_MODES:
                raise InputError(f"session {session!r}: choose {', '.join(A.SESSION_MODES)}")
            if half_select not in A.SNEAK_PATH:
                raise InputError(f"half_select {half_select!r}: choose v2 or v3")
            if retries < 1:
                raise InputError(f"retries {retries}: at least 1")
            self.settings = A.Settings(
                cycles=int(cycles),
                words=rows,
                bits=cols,
                read_mode=A.READ_MODES[read_mode],
                session=A.SESSION_MODES[session],
                sneak_path=A.SNEAK_PATH[half_select],
                read_v=self.read_v,
            )
            A.check_settings(self.settings)
        except A.ArgError as exc:
            link.close()
            raise InputError(f"{self.NAME}: {exc}") from None
        except BaseException:
            link.close()
            raise
        self.link = link
        self.g_range = g_range_s
        self.half_select = half_select
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.reset_wait_s = float(reset_wait_s)
        self.version_timeout_s = float(version_timeout_s)
        self.write_delay_s = float(write_delay_s)
        self.per_read_s = float(per_read_s)
        self.per_pulse_s = float(per_pulse_s)
        self.stats = Arc1Stats()
        self.firmware: tuple[int, int] | None = None
        self._sneak = self.settings.sneak_path
        self._in_sync = False
        try:
            self._resync(None)
            self.firmware = self._query_version()
        except BaseException:
            link.close()
            raise

    # -- link ------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        self.link.write(data)
        if self.write_delay_s > 0:
            time.sleep(self.write_delay_s)  # libarc1: < 0.5 ms between writes drops packets

    def _synchronise(self) -> None:
        """Reset the board and run the init handshake; the board's settings are known after."""
        self._in_sync = False
        self.stats.resyncs += 1
        self._send(A.reset())
        time.sleep(self.reset_wait_s)
        self.link.discard_input()
        init = A.init(self.settings)
        self._send(init)
        reply = self.link.read_line(self.timeout_s, A.describe(init))
        if reply != A.INIT_OK:
            raise GarbledReply(
                f"{self.link.name}: the board answered {reply[:20]!r} to {A.describe(init)}, "
                "not the confirmation 1"
            )
        self._send(A.set_read(self.settings.read_mode, self.settings.read_v))
        self._sneak = self.settings.sneak_path
        self._in_sync = True

    def _resync(self, exc: LinkError | None) -> None:
        """Reset and init until the board confirms (`retries` tries; a lost port reopened)."""
        if exc is not None:
            log.debug("ArC ONE link: %s", exc)
            self.stats.read_retries += 1
        last: LinkError | None = None
        for _ in range(self.retries):
            try:
                if isinstance(last, LinkLost):
                    self.link.reopen()
                self._synchronise()
                return
            except LinkError as again:
                log.debug("ArC ONE handshake failed: %s", again)
                last = again
        why = f"last: {last}" if exc is None else f"first failure: {exc}; last: {last}"
        raise BackendError(
            f"{self.link.name}: no init handshake with the ArC ONE in {self.retries} tries ({why})"
        )

    def _query_version(self) -> tuple[int, int] | None:
        """Firmware (major, minor); None when the firmware predates the query (no reply)."""
        cmd = A.version()
        self._send(cmd)
        try:
            return A.decode_version(
                self.link.read_exact(A.VERSION_BYTES, self.version_timeout_s, A.describe(cmd))
            )
        except LinkError as exc:
            log.info("ArC ONE firmware version unknown: %s", exc)
            self.link.discard_input(quiet_s=min(0.2, self.version_timeout_s))
            return None

    # -- reads -----------------------------------------------------------------------------
    def _address(self, row: int, col: int) -> tuple[int, int]:
        """1-based (W, B) of a device, checked against the configured array."""
        word, bit = int(row) + 1, int(col) + 1
        A.check_address(word, bit, self.settings.words, self.settings.bits)
        return word, bit

    def _conductances(self, r: NDArray[np.float32], cmd: bytes, where: str) -> NDArray[np.float64]:
        bad = ~(np.isfinite(r) & (r > 0))
        if bad.any():
            k = int(np.argmax(bad))
            raise GarbledReply(
                f"{self.link.name}: {A.describe(cmd)} returned {float(r.reshape(-1)[k])!r} ohm"
                f"{where}: not a finite positive resistance; refused"
            )
        return 1.0 / r.astype(np.float64)

    def _retry_read(self, attempt_read: Any) -> NDArray[np.float64]:
        last: LinkError | None = None
        for _ in range(self.retries):
            if not self._in_sync:
                self._resync(last)
            try:
                out: NDArray[np.float64] = attempt_read()
                return out
            except LinkError as exc:
                last = exc
                self._in_sync = False
        raise BackendError(f"{last}; no valid read after {self.retries} tries")

    def _read_all(self) -> NDArray[np.float64]:
        words, bits = self.settings.words, self.settings.bits

        def once() -> NDArray[np.float64]:
            cmd = A.read_all(words, bits)
            self._send(cmd)
            data = self.link.read_exact(
                A.FLOAT_BYTES * words * bits,
                self.timeout_s + words * bits * self.per_read_s,
                A.describe(cmd),
            )
            r = A.decode_floats(data).reshape(words, bits)
            g = self._conductances(r, cmd, "")
            self.stats.reads += words * bits
            return g

        return self._retry_read(once)

    def _read_one(self, row: int, col: int) -> float:
        word, bit = self._address(row, col)

        def once() -> NDArray[np.float64]:
            cmd = A.read_one(word, bit)
            self._send(cmd)
            data = self.link.read_exact(
                A.FLOAT_BYTES, self.timeout_s + self.per_read_s, A.describe(cmd)
            )
            self.stats.reads += 1
            return self._conductances(A.decode_floats(data), cmd, f" for W{word} B{bit}")

        return float(self._retry_read(once)[0])

    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        if rows.size * cols.size * 4 >= self._rows * self._cols:
            return self._read_all()[np.ix_(rows, cols)]
        out = np.empty((rows.size, cols.size))
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                out[i, j] = self._read_one(int(r), int(c))
        return out

    # -- pulses ----------------------------------------------------------------------------
    def _effective_bias(self, plan: PulsePlan) -> str:
        """The board always biases unselected lines: a plan naming none gets the default."""
        return self.half_select if plan.bias == "none" else plan.bias

    def _check_capability(self, plan: PulsePlan) -> None:
        bias = self._effective_bias(plan)
        for k, group in enumerate(plan.groups):
            if group.total == 0:
                continue
            amp, width = group.shape.amplitude_v, group.shape.width_s
            try:
                A.check_pulse(amp, width)
            except A.ArgError as exc:
                raise InputError(f"group {k}: {exc}") from None
            half = self.limits.max_half_select_v
            if plan.bias == "none" and half is not None:
                seen = abs(amp) / (2.0 if bias == "v2" else 3.0)
                if seen > half:
                    raise LimitViolation(
                        f"group {k}: the ArC ONE biases unselected lines ({bias}), so devices "
                        f"sharing a line with a pulsed one see {seen:g} V, over "
                        f"max_half_select_v={half:g} V"
                    )

    def _apply(self, plan: PulsePlan) -> None:
        self._check_capability(plan)
        if not self._in_sync:
            self._resync(None)
        sneak = A.SNEAK_PATH[self._effective_bias(plan)]
        sent = 0
        last = (0, 0)
        busy_s = 0.0
        try:
            if sneak != self._sneak:
                self._send(A.set_hardware(self.settings.cycles, sneak))
                self._sneak = sneak
            for group in plan.groups:
                if group.total == 0:
                    continue
                pulse = A.pulse_active(group.shape.amplitude_v, group.shape.width_s)
                for r, c in zip(*np.nonzero(group.counts), strict=True):
                    word, bit = self._address(int(r), int(c))
                    self._send(A.select(word, bit))
                    for _ in range(int(group.counts[r, c])):
                        self._send(pulse)
                        sent += 1
                    last = (int(r), int(c))
                busy_s += group.total * (group.shape.width_s + self.per_pulse_s)
            fence = A.read_one(*self._address(*last))
            self._send(fence)
            self.link.read_exact(A.FLOAT_BYTES, self.timeout_s + busy_s, A.describe(fence))
        except LinkError as exc:
            self._in_sync = False
            raise DeliveryUnknown(
                f"{exc}; {sent} of the plan's {plan.total_pulses} pulses were sent and the "
                "ArC ONE cannot say how many it applied: nothing is sent again"
            ) from exc
        self.stats.pulses += sent

    def pulse_and_read(self, row: int, col: int, shape: PulseShape) -> float:
        """One pulse on one device and its conductance after it (job ``3``)."""
        self._check_open()
        counts = np.zeros(self.shape, dtype=np.int64)
        counts[row, col] = 1
        plan = PulsePlan.from_groups(self.shape, [PulseGroup(shape, counts)])
        check_plan(plan, self.limits, run_counts=self._pulse_counts)
        self._check_capability(plan)
        word, bit = self._address(row, col)
        cmd = A.pulse_read(word, bit, shape.amplitude_v, shape.width_s)
        if self._sneak != A.SNEAK_PATH[self.half_select]:
            self._send(A.set_hardware(self.settings.cycles, A.SNEAK_PATH[self.half_select]))
            self._sneak = A.SNEAK_PATH[self.half_select]
        try:
            self._send(cmd)
            data = self.link.read_exact(
                A.FLOAT_BYTES,
                self.timeout_s + shape.width_s + self.per_pulse_s + self.per_read_s,
                A.describe(cmd),
            )
        except LinkError as exc:
            self._in_sync = False
            raise DeliveryUnknown(f"{exc}; the pulse may or may not have been applied") from exc
        self._pulse_counts[row, col] += 1
        self.stats.pulses += 1
        return float(self._conductances(A.decode_floats(data), cmd, f" for W{word} B{bit}")[0])

    # -- description -----------------------------------------------------------------------
    def _info(self) -> BackendInfo:
        s = self.settings
        mode = {v: k for k, v in A.READ_MODES.items()}.get(s.read_mode, "tia4p")
        return BackendInfo(
            name=f"{self.NAME} on {self.link.name}",
            kind="arc1",
            rows=self._rows,
            cols=self._cols,
            g_min_s=self.g_range[0],
            g_max_s=self.g_range[1],
            supports_row_parallel=False,
            # A plan naming no scheme is delivered under `half_select` (the board always biases
            # the unselected lines), its half-select voltage checked against the limits.
            bias_schemes=("none", "v2", "v3"),
            min_width_s=A.MIN_WIDTH_S,
            max_width_s=A.MAX_WIDTH_S,
            max_abs_v=A.MAX_ABS_V,
            details={
                "firmware": "unknown" if self.firmware is None else "{}.{}".format(*self.firmware),
                "board_lines": [A.BOARD_WORDS, A.BOARD_BITS],
                "configured_lines": [s.words, s.bits],
                "read_mode": mode,
                "read_cycles": s.cycles,
                "session": {v: k for k, v in A.SESSION_MODES.items()}[s.session],
                "half_select_default": self.half_select,
                "commands": self.link.commands,
                "round_trips": self.link.round_trips,
            },
        )

    def _close(self) -> None:
        """Leave the board reset (no device selected); only when the stream is in step, so
        that the reset cannot be read as an argument of a half-received command."""
        try:
            if self._in_sync:
                self._send(A.reset())
        except LinkError as exc:
            log.debug("ArC ONE reset on close: %s", exc)
        finally:
            self.link.close()

    @property
    def bus(self) -> dict[str, Any]:
        return {
            "commands": self.link.commands,
            "round_trips": self.link.round_trips,
            "bytes_out": self.link.bytes_out,
            "bytes_in": self.link.bytes_in,
            "resyncs": self.stats.resyncs,
            "read_retries": self.stats.read_retries,
        }
