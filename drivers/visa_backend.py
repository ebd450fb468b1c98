"""A crossbar behind an SMU in pulse mode and a switch matrix, over VISA.

The matrix connects one word line to the SMU and one bit line to ground; the SMU fires a
timer-paced pulse train (`:TRIG:COUN n`) and reads with a DC spot measurement. Each train
and its `*OPC?` go in one program message. Pulses are counted by the SMU's reading buffer
(one reading per pulse, cleared at the start of each batch), so when a train's fate is
unknown after a link failure the driver asks the instrument how many pulses it delivered
and sends only the rest: no pulse is lost or sent twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from drivers import scpi as S
from drivers.errors import GarbledReply, IdentityError, InstrumentError, LinkError, LinkLost
from drivers.transport import LineTransport
from protocols.backend import BackendInfo, CrossbarBackend
from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.plan import PulsePlan
from protocols.shutdown import held

log = logging.getLogger(__name__)

T = TypeVar("T")

SMU_MODEL_RE = re.compile(r"^[^,]*,\s*B29\d\d[A-Z]?\s*,")
MATRIX_MODEL_RE = re.compile(r"^[^,]*,\s*(Model\s+)?707B\s*,")
#: Shortest pulse period the driver programs (and at least twice the width).
MIN_PERIOD_S = 1e-4


def period_for(width_s: float) -> float:
    return max(2.0 * width_s, MIN_PERIOD_S)


class SmuMatrixBackend(CrossbarBackend):
    """`CrossbarBackend` over a B2900-style SMU and a 707B-style switch matrix."""

    def __init__(
        self,
        smu: LineTransport,
        matrix: LineTransport,
        rows: int,
        cols: int,
        *,
        g_range_s: tuple[float, float],
        limits: SafetyLimits | None = None,
        read_v: float | None = None,
        timeout_s: float = 2.0,
        retries: int = 20,
        min_width_s: float = S.SMU_MIN_WIDTH_S,
        columns_per_slot: int = S.MATRIX_COLUMNS_PER_SLOT,
        slots: int = S.MATRIX_SLOTS,
    ) -> None:
        super().__init__(rows, cols, limits=limits, read_v=read_v)  # read_v: checked there
        self.map = S.MatrixMap(rows, cols, columns_per_slot, slots)
        if not self.map.fits():
            raise InputError(
                f"a {rows}x{cols} array needs {self.map.lines} matrix columns; the matrix has "
                f"{slots} slots x {columns_per_slot} columns = {slots * columns_per_slot}"
            )
        if not 0.0 < self.read_v <= 1.0:
            raise InputError(f"read_v={self.read_v!r} V: a read must stay in (0, 1] V")
        compliance = self.limits.compliance_a
        if not S.SMU_MIN_COMPLIANCE_A <= compliance <= S.SMU_MAX_COMPLIANCE_A:
            smu.close()
            matrix.close()
            raise InputError(
                f"limits compliance_a={compliance:g} A is outside the SMU's compliance range "
                f"[{S.SMU_MIN_COMPLIANCE_A:g}, {S.SMU_MAX_COMPLIANCE_A:g}] A"
            )
        self.smu, self.matrix = smu, matrix
        self.g_range_s = g_range_s
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.min_width_s = float(min_width_s)
        self._shape: tuple[float, float] | None = None
        self.recoveries = 0
        output_on = False
        try:
            self.smu_idn = self._identify(smu, SMU_MODEL_RE, "B2900-series SMU")
            self.matrix_idn = self._identify(matrix, MATRIX_MODEL_RE, "707B switch matrix")
            output_on = True  # from the setup message on, the output may be on
            self._retry(
                smu,
                lambda: self._expect_one(smu, S.smu_setup(self.limits.compliance_a, MIN_PERIOD_S)),
            )
            self._check_smu_errors()
            self._release()
        except BaseException:
            if output_on:  # a failure or a signal after the setup: output off, relays open
                with held():
                    self._close()
            else:
                smu.close()
                matrix.close()
            raise

    # -- wire ------------------------------------------------------------------------------
    @staticmethod
    def _query(t: LineTransport, message: str | list[str], timeout_s: float) -> str:
        lines = [message] if isinstance(message, str) else message
        # Several lines go out in one write: a second small write would wait for the
        # acknowledgement of the first (Nagle), costing milliseconds per exchange.
        raw = t.query("\n".join(lines).encode("ascii"), timeout_s)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise GarbledReply(f"{t.name}: non-ASCII reply {raw[:40]!r}") from exc

    def _expect_one(
        self, t: LineTransport, message: str | list[str], timeout_s: float | None = None
    ) -> None:
        reply = self._query(t, message, self.timeout_s if timeout_s is None else timeout_s)
        if reply != "1":
            raise GarbledReply(f"{t.name}: expected '1' (operation complete), got {reply[:40]!r}")

    def _identify(self, t: LineTransport, pattern: re.Pattern[str], what: str) -> str:
        idn = self._retry(t, lambda: self._query(t, S.IDN, self.timeout_s), resync=False)
        if not pattern.match(idn):
            raise IdentityError(f"{t.name} answers *IDN? with {idn!r}, not a {what}")
        return idn

    def _resync(self, t: LineTransport) -> None:
        """After a failure: a fresh connection (no stale reply can follow) and no trust in
        the cached pulse shape."""
        self.recoveries += 1
        t.reopen()
        self._shape = None

    def _retry(self, t: LineTransport, op: Callable[[], T], *, resync: bool = True) -> T:
        last: LinkError | None = None
        for attempt in range(self.retries):
            try:
                if attempt and resync:
                    self._resync(t)
                elif attempt:
                    t.reopen()
                return op()
            except LinkError as exc:
                last = exc
                log.debug("%s: %s (attempt %d)", t.name, exc, attempt)
        raise LinkLost(f"{t.name}: giving up after {self.retries} attempts ({last})")

    # -- instrument state ------------------------------------------------------------------
    def _check_smu_errors(self) -> None:
        errors = []
        for _ in range(S.SMU_ERROR_QUEUE_DEPTH):
            code, text = self._retry(
                self.smu,
                lambda: _parsed(S.parse_error, self._query(self.smu, S.SYST_ERR, self.timeout_s)),
            )
            if code == 0:
                break
            errors.append(f"{code} {text}")
        if errors:
            shown = "; ".join(errors[:4]) + (
                f"; ... ({len(errors)} entries)" if len(errors) > 4 else ""
            )
            raise InstrumentError(f"SMU error queue: {shown}")

    def _delivered(self) -> int:
        """Pulses in the reading buffer; read until two answers agree (a guard on noise)."""

        def once() -> int:
            return _parsed(S.parse_int, self._query(self.smu, S.smu_count(), self.timeout_s))

        previous = self._retry(self.smu, once)
        for _ in range(self.retries):
            current = self._retry(self.smu, once)
            if current == previous:
                return current
            previous = current
        raise LinkLost(f"{self.smu.name}: the pulse count does not settle")

    def _connect(self, r: int, c: int) -> None:
        self._retry(
            self.matrix, lambda: self._expect_one(self.matrix, S.matrix_connect(self.map, r, c))
        )

    def _release(self) -> None:
        self._retry(self.matrix, lambda: self._expect_one(self.matrix, S.matrix_release()))

    # -- pulses ----------------------------------------------------------------------------
    def _check_capability(self, plan: PulsePlan) -> None:
        if plan.bias != "none":
            raise InputError(
                f"plan bias {plan.bias!r}: the SMU and matrix leave unselected lines floating; "
                "only bias 'none' can be delivered"
            )
        for k, group in enumerate(plan.groups):
            if group.total == 0:
                continue
            amp, width = group.shape.amplitude_v, group.shape.width_s
            if abs(amp) > S.SMU_MAX_ABS_V:
                raise InputError(
                    f"group {k}: amplitude {amp:g} V beyond the SMU's ±{S.SMU_MAX_ABS_V:g} V"
                )
            if width > S.SMU_MAX_WIDTH_S:
                raise InputError(
                    f"group {k}: width {width:g} s is above the SMU's maximum pulse width "
                    f"{S.SMU_MAX_WIDTH_S:g} s"
                )
            if width < self.min_width_s:
                raise InputError(
                    f"group {k}: width {width:g} s is below the SMU's minimum pulse width "
                    f"{self.min_width_s:g} s"
                )

    def _apply(self, plan: PulsePlan) -> None:
        self._check_capability(plan)
        self._retry(self.smu, lambda: self._expect_one(self.smu, S.smu_epoch()))
        in_epoch = 0
        for group in plan.groups:
            rr, cc = np.nonzero(group.counts)
            for r, c in zip(rr.tolist(), cc.tolist(), strict=True):
                n = int(group.counts[r, c])
                if in_epoch + n > S.SMU_TRACE_CAPACITY:
                    self._retry(self.smu, lambda: self._expect_one(self.smu, S.smu_epoch()))
                    in_epoch = 0
                self._connect(r, c)
                self._train(n, group.shape.amplitude_v, group.shape.width_s, in_epoch)
                in_epoch += n
        self._release()
        self._check_smu_errors()

    def _train(self, n: int, amp: float, width: float, before: int) -> None:
        """Deliver `n` pulses given `before` already counted in this epoch, exactly once."""
        target = before + n
        remaining = n
        for _ in range(self.retries):
            shape_changed = self._shape != (amp, width)
            message = S.smu_train(
                remaining,
                amp if shape_changed else None,
                width if shape_changed else None,
                period_for(width) if shape_changed else None,
            )
            timeout = self.timeout_s + remaining * period_for(width) * 1.5
            try:
                self._expect_one(self.smu, message, timeout)
                self._shape = (amp, width)
                return
            except LinkError as exc:
                log.debug("%s: train of %d: %s", self.smu.name, remaining, exc)
                self._retry(self.smu, lambda: self._resync(self.smu), resync=False)
                self._check_smu_errors()
                done = self._delivered()
                if done > target or done < before:
                    raise InstrumentError(
                        f"SMU counted {done} pulses in this batch, expected between "
                        f"{before} and {target}"
                    ) from exc
                remaining = target - done
                if remaining == 0:
                    return
        raise LinkLost(f"{self.smu.name}: pulse train not confirmed after {self.retries} tries")

    # -- reads -----------------------------------------------------------------------------
    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        out = np.empty((rows.size, cols.size))
        message = S.smu_read(self.read_v)
        for i, r in enumerate(rows.tolist()):
            for j, c in enumerate(cols.tolist()):
                self._connect(r, c)
                current = self._retry(
                    self.smu,
                    lambda: _parsed(S.parse_float, self._query(self.smu, message, self.timeout_s)),
                )
                out[i, j] = current / self.read_v
        self._retry(self.smu, lambda: self._expect_one(self.smu, S.smu_after_read()))
        self._release()
        return out

    # -- description and shutdown ---------------------------------------------------------
    def _info(self) -> BackendInfo:
        return BackendInfo(
            name=f"{self.smu_idn.split(',')[1].strip()} + 707B on {self.smu.name}",
            kind="visa",
            rows=self._rows,
            cols=self._cols,
            g_min_s=self.g_range_s[0],
            g_max_s=self.g_range_s[1],
            bias_schemes=("none",),
            min_width_s=self.min_width_s,
            max_width_s=S.SMU_MAX_WIDTH_S,
            max_abs_v=S.SMU_MAX_ABS_V,
            details={
                "smu": self.smu_idn,
                "matrix": self.matrix_idn,
                "read_v": self.read_v,
                "round_trips": self.smu.round_trips + self.matrix.round_trips,
            },
        )

    def _close(self) -> None:
        """Output off and all relays open, whatever state the run ended in."""
        try:
            self._retry(self.smu, lambda: self._expect_one(self.smu, S.smu_shutdown()))
            self._release()
        except (LinkError, InstrumentError) as exc:
            log.warning("closing the VISA station (output may still be on): %s", exc)
        finally:
            self.smu.close()
            self.matrix.close()


def _parsed(parse: Callable[[str], T], reply: str) -> T:
    try:
        return parse(reply)
    except ValueError as exc:
        raise GarbledReply(str(exc)) from exc
