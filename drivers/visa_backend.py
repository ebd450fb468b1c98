"""A crossbar behind a pulse source and a switch matrix, over VISA.

The matrix (a 707B) connects one word line to the source and one bit line to ground; the
source fires a train of pulses on that device, or measures its current at the read
voltage. The source is a dialect (drivers/pulse_source.py): a Keysight B2900 SMU, or a
Keithley 4200A-SCS with a 4225-PMU for pulses down to tens of nanoseconds.

Safety rules the station keeps, whatever the source:
- no relay switches under voltage: the source is idle at 0 V before every connect, reads
  included, and every close is verified before anything is fired;
- start-up opens every relay before the output goes on;
- shutdown stops a running train, sets 0 V and turns the output off, then opens every
  relay; a constructor that fails after the output may have gone on does the same.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from drivers import scpi as S
from drivers.errors import InstrumentError, LinkError
from drivers.matrix import Matrix
from drivers.pulse_source import PulseSource
from drivers.source_b2900 import B2900Source
from drivers.transport import LineTransport
from drivers.visa_link import Link
from protocols.backend import BackendError, BackendInfo, CrossbarBackend
from protocols.crashpoints import crash_point
from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.plan import PulsePlan
from protocols.shutdown import held

log = logging.getLogger(__name__)

#: Highest read voltage the station accepts (reads must not program the devices).
MAX_READ_V = 1.0


class ComplianceHit(InstrumentError):
    """A read hit the current compliance (or overflowed): no conductance can be given."""


class SmuMatrixBackend(CrossbarBackend):
    """`CrossbarBackend` over a pulse source and a 707B-style switch matrix.

    `smu` is the pulse source's transport (a B2900 unless `source` names another dialect
    class), `matrix` the switch matrix's.
    """

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
        min_width_s: float | None = None,
        columns_per_slot: int = S.MATRIX_COLUMNS_PER_SLOT,
        slots: int = S.MATRIX_SLOTS,
        source: type[PulseSource] = B2900Source,
    ) -> None:
        self._output_may_be_on = False
        try:
            # the read voltage is checked against the limits there (protocols/backend.py)
            super().__init__(rows, cols, limits=limits, read_v=read_v)
            self.map = S.MatrixMap(rows, cols, columns_per_slot, slots)
            if not self.map.fits():
                raise InputError(
                    f"a {rows}x{cols} array needs {self.map.lines} matrix columns; the matrix "
                    f"has {slots} slots x {columns_per_slot} columns = {slots * columns_per_slot}"
                )
            if not 0.0 < self.read_v <= MAX_READ_V:
                raise InputError(
                    f"read_v={self.read_v!r} V: a read must stay in (0, {MAX_READ_V}] V"
                )
            self.source = self._make_source(source, smu, timeout_s, retries, min_width_s)
        except BaseException:
            smu.close()
            matrix.close()
            raise
        self.matrix = Matrix(Link(matrix, timeout_s=timeout_s, retries=retries), self.map)
        self.g_range_s = g_range_s
        self.timeout_s = float(timeout_s)
        try:
            self.source.open()
            rows_needed = "".join(
                sorted({S.MATRIX_ROW_GROUND, self.source.pulse_row, self.source.read_row})
            )
            self.matrix.open(rows_needed)
            self.matrix.release()  # every relay open before the output goes on
            self._output_may_be_on = True  # *RST and setup leave it off; a fault may not
            self.source.setup()
            self.source.output_on()
        except BaseException:  # a failure or a signal: output off, then relays open
            with held():
                self._shutdown()
            raise

    def _make_source(
        self,
        source: type[PulseSource],
        smu: LineTransport,
        timeout_s: float,
        retries: int,
        min_width_s: float | None,
    ) -> PulseSource:
        compliance = self.limits.compliance_a
        link = Link(smu, timeout_s=timeout_s, retries=retries)
        if source is B2900Source:
            if not S.SMU_MIN_COMPLIANCE_A <= compliance <= S.SMU_MAX_COMPLIANCE_A:
                raise InputError(
                    f"limits compliance_a={compliance:g} A is outside the SMU's compliance range "
                    f"[{S.SMU_MIN_COMPLIANCE_A:g}, {S.SMU_MAX_COMPLIANCE_A:g}] A"
                )
            return B2900Source(
                link,
                compliance,
                min_width_s=S.SMU_MIN_WIDTH_S if min_width_s is None else min_width_s,
            )
        made = source(link, compliance)
        if min_width_s is not None:
            made.min_width_s = float(min_width_s)
        return made

    # -- identities, kept for callers that know the station as an SMU + matrix -------------
    @property
    def smu(self) -> LineTransport:
        return self.source.link.transport

    @property
    def smu_idn(self) -> str:
        return self.source.idn

    @property
    def matrix_idn(self) -> str:
        return self.matrix.idn

    @property
    def recoveries(self) -> int:
        return self.source.link.recoveries + self.matrix.link.recoveries

    @property
    def min_width_s(self) -> float:
        return self.source.min_width_s

    # -- pulses ----------------------------------------------------------------------------
    def _check_capability(self, plan: PulsePlan) -> None:
        if plan.bias != "none":
            raise InputError(
                f"plan bias {plan.bias!r}: the matrix leaves unselected lines floating; "
                "only bias 'none' can be delivered"
            )
        for k, group in enumerate(plan.groups):
            if group.total:
                self.source.check_shape(k, group.shape.amplitude_v, group.shape.width_s)

    def _apply(self, plan: PulsePlan) -> None:
        self._check_capability(plan)
        self.source.begin_batch()
        for k, group in enumerate(plan.groups):
            if k:  # a test-only kill between two groups of one plan
                crash_point("plan.group")
            rr, cc = np.nonzero(group.counts)
            for r, c in zip(rr.tolist(), cc.tolist(), strict=True):
                self.matrix.connect(r, c, self.source.pulse_row)
                shape = group.shape
                self.source.fire(int(group.counts[r, c]), shape.amplitude_v, shape.width_s)
        self.matrix.release()
        self.source.end_batch()

    # -- reads -----------------------------------------------------------------------------
    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        return self._read_at(rows, cols, self.read_v)

    def _read_at(
        self, rows: NDArray[np.intp], cols: NDArray[np.intp], read_v: float
    ) -> NDArray[np.float64]:
        """Conductances at `read_v`; a read that hit compliance is reported, not converted."""
        if not 0.0 < read_v <= MAX_READ_V:
            raise InputError(f"read voltage {read_v!r} V: a read must stay in (0, {MAX_READ_V}] V")
        self._check_read(read_v)  # the same rule as the contract's own read voltage
        out = np.empty((rows.size, cols.size))
        hits: list[str] = []
        for i, r in enumerate(rows.tolist()):
            for j, c in enumerate(cols.tolist()):
                self.matrix.connect(r, c, self.source.read_row)
                reading = self.source.measure(read_v)
                if reading.problem is not None:
                    hits.append(f"({r}, {c}): {reading.current_a:.4g} A, {reading.problem}")
                out[i, j] = reading.current_a / read_v
        self.matrix.release()
        if hits:
            shown = "; ".join(hits[:4]) + (f"; ... ({len(hits)} devices)" if len(hits) > 4 else "")
            raise ComplianceHit(
                f"reads at {read_v:g} V are not measurements of the devices: {shown}"
            )
        return out

    # -- description and shutdown ---------------------------------------------------------
    def _info(self) -> BackendInfo:
        return BackendInfo(
            name=f"{self.source.model} + {self.matrix.idn.split(',')[1].strip()} "
            f"on {self.source.name}",
            kind="visa",
            rows=self._rows,
            cols=self._cols,
            g_min_s=self.g_range_s[0],
            g_max_s=self.g_range_s[1],
            bias_schemes=("none",),
            min_width_s=self.source.min_width_s,
            max_width_s=self.source.max_width_s,
            max_abs_v=self.source.max_abs_v,
            details={
                **self.source.details(),
                "matrix": self.matrix.idn,
                "matrix_cards": list(self.matrix.cards),
                "read_v": self.read_v,
                "round_trips": self.smu.round_trips + self.matrix.link.transport.round_trips,
            },
        )

    def _shutdown(self) -> None:
        """Stop, 0 V, output off, then every relay open; a step that fails does not stop the
        next, and the links are closed whatever happens."""
        problems: list[str] = []
        try:
            if self._output_may_be_on:
                try:
                    self.source.shutdown()
                    self._output_may_be_on = False
                except (LinkError, InstrumentError, BackendError) as exc:
                    problems.append(f"source: {exc}")
            if self.matrix.identified:
                try:
                    self.matrix.release()
                except (LinkError, InstrumentError, BackendError) as exc:
                    problems.append(f"matrix: {exc}")
        finally:
            self.source.close()
            self.matrix.close()
        if problems:
            log.warning(
                "closing the VISA station (output or relays may be on): %s", "; ".join(problems)
            )

    def _close(self) -> None:
        """Output off and all relays open, whatever state the run ended in."""
        self._shutdown()
