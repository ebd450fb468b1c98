"""The Keithley 4200A-SCS (KXCI) as a state machine: a 4225-PMU channel on matrix row A
and SMU1 on matrix row C, over the station's switch matrix.

Every command gets one reply (`ACK` for a setting, a bare negative error number when
refused, as the instrument does over the LAN). `:PMU:EXECUTE` answers at once and the burst
runs in real time; `:PMU:TEST:STATUS?` says 1 until it has ended. The serial-poll status
byte `SP` carries the syntax-error bit of a refused command since the last poll; the
emulator hands the batch's pulses to the array when it is read (the driver reads it after
every batch), as the B2900 core does at `:SYST:ERR?`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from drivers import kxci as K
from drivers import scpi as S
from drivers.emu_scpi import RunningTrain, Station

KXCI_ID = "KI4200A V1.13 (mrnn-hil emulator)"
KXCI_IDN = "KEITHLEY INSTRUMENTS,MODEL 4200A-SCS,EMU0003,V1.13"
KXCI_OPTIONS = "SMU1,SMU2,PMU1"


@dataclass
class KxciBehaviour:
    """Identity and options replies; `realtime=False` runs bursts instantly (dry run)."""

    id_reply: str = KXCI_ID
    idn_reply: str = KXCI_IDN
    options: str = KXCI_OPTIONS
    realtime: bool = True


class _Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(str(code))
        self.code = code


class KxciCore:
    """KXCI command interpreter over a `Station`."""

    def __init__(self, station: Station, behaviour: KxciBehaviour | None = None) -> None:
        self.station = station
        self.behaviour = behaviour or KxciBehaviour()
        self.syntax_error = False
        self.pmu_ready = False
        self.pmu_output = False
        self.base_v = 0.0
        self.amplitude_v = 0.0
        self.period_s = 1e-6
        self.width_s = 5e-7
        self.edges_s = (K.PMU_EDGE_S, K.PMU_EDGE_S)
        self.burst = 1
        self.load_ohm = 50.0
        self.range_a = 1e-2
        self.train: RunningTrain | None = None
        self.smu_on = False
        self.smu_v = 0.0
        self.smu_compliance_a = 1e-4
        self.batch = 0
        station.attach(S.MATRIX_ROW_SOURCE, self.pmu_live)
        station.attach(S.MATRIX_ROW_READ_SMU, self.smu_live)

    # -- state -------------------------------------------------------------------------------
    def running(self, now: float) -> bool:
        return self.train is not None and self.train.running(now)

    def pmu_live(self, now: float) -> bool:
        return self.pmu_output and (self.base_v != 0.0 or self.running(now))

    def smu_live(self, now: float) -> bool:
        return self.smu_on and self.smu_v != 0.0

    # -- messages ---------------------------------------------------------------------------
    def handle(self, line: bytes) -> list[str]:
        """One reply for one message (an over-long or non-ASCII one is refused)."""
        with self.station.lock:
            try:
                text = line.decode("ascii").strip()
            except UnicodeDecodeError:
                return [self._refuse(K.ERR_ILLEGAL_PARAMETER)]
            if len(line) > 4096 or not text:
                return [self._refuse(K.ERR_ILLEGAL_PARAMETER)]
            try:
                return [self._command(text)]
            except _Refused as exc:
                return [self._refuse(exc.code)]

    def _refuse(self, code: int) -> str:
        self.syntax_error = True
        return str(code)

    def _command(self, text: str) -> str:
        now = time.monotonic()
        self.station.advance(now)
        if text == K.ID:
            return self.behaviour.id_reply
        if text.upper() == S.IDN:
            return self.behaviour.idn_reply
        if text.upper() == K.OPT:
            return self.behaviour.options
        if text == K.SP:
            self.station.flush()
            status = (K.SP_SYNTAX_ERROR if self.syntax_error else 0) | (
                K.SP_BUSY if self.running(now) else 0
            )
            self.syntax_error = False
            return str(status)
        if text.startswith("US;"):
            return self._smu(text[3:])
        head, _, rest = text.partition(" ")
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        if head == K.PMU_STATUS and not args:
            return "1" if self.running(now) else "0"
        if head == K.PMU_EXECUTE and not args:
            self._execute(now)
            return K.ACK
        self._pmu_setting(head, args, now)
        return K.ACK

    def _pmu_setting(self, head: str, args: list[str], now: float) -> None:
        if self.running(now) and head != K.PMU_OUTPUT:
            raise _Refused(K.ERR_ILLEGAL_PARAMETER)
        if head == K.PMU_INIT and args == ["0"]:
            self.pmu_ready = True
        elif head == K.PMU_RPM and len(args) == 2 and args[0] == "PMU1-1" and args[1] == "0":
            pass
        elif head == K.PMU_LOAD and len(args) == 2 and args[0] == "1":
            self.load_ohm = _num(args[1], 1.0, 1e6)
        elif head == K.PMU_MEAS_MODE and len(args) == 1 and args[0] in ("0", "1", "2", "3"):
            pass
        elif head == K.PMU_MEAS_RANGE and len(args) == 3 and args[:2] == ["1", "2"]:
            value = _num(args[2], 0.0, 1.0)
            if value not in K.PMU_CURRENT_RANGES_A:
                raise _Refused(K.ERR_ILLEGAL_PARAMETER)
            self.range_a = value
        elif head == K.PMU_TRAIN and len(args) == 3 and args[0] == "1":
            base = _num(args[1], -K.PMU_MAX_ABS_V, K.PMU_MAX_ABS_V)
            amp = _num(args[2], -K.PMU_MAX_ABS_V, K.PMU_MAX_ABS_V)
            if abs(base + amp) > K.PMU_MAX_ABS_V:
                raise _Refused(K.ERR_ILLEGAL_PARAMETER)
            self.base_v, self.amplitude_v = base, amp
        elif head == K.PMU_TIMES and len(args) in (5, 6) and args[0] == "1":
            period = _num(args[1], K.PMU_MIN_PERIOD_S, K.PMU_MAX_PERIOD_S, K.ERR_PULSE_TIMING)
            width = _num(args[2], K.PMU_MIN_WIDTH_S, period, K.ERR_PULSE_TIMING)
            rise = _num(args[3], K.PMU_EDGE_S, 33e-3, K.ERR_PULSE_TIMING)
            fall = _num(args[4], K.PMU_EDGE_S, 33e-3, K.ERR_PULSE_TIMING)
            if width + rise + fall > period:
                raise _Refused(K.ERR_PULSE_TIMING)
            self.period_s, self.width_s, self.edges_s = period, width, (rise, fall)
        elif head == K.PMU_BURST and len(args) == 1:
            self.burst = int(_num(args[0], 1, 2**31 - 1, integer=True))
        elif head == K.PMU_OUTPUT and len(args) == 2 and args[0] == "1" and args[1] in ("0", "1"):
            on = args[1] == "1"
            if on != self.pmu_output:
                self.station.record("pmu", "output on" if on else "output off")
            self.pmu_output = on
        else:
            raise _Refused(K.ERR_ILLEGAL_PARAMETER)

    def _execute(self, now: float) -> None:
        if not self.pmu_ready or self.running(now):
            raise _Refused(K.ERR_ILLEGAL_PARAMETER)
        n = self.burst
        realtime = self.behaviour.realtime
        busy = n * self.period_s if realtime else 0.0
        self.train = RunningTrain(
            t0=now,
            step=self.period_s if realtime else 0.0,
            n=n,
            amplitude_v=self.amplitude_v,
            width_s=self.width_s,
            epoch=self.batch,
            row=S.MATRIX_ROW_SOURCE,
            busy_until=now + busy,
            gate=lambda: self.pmu_output,
        )
        if self.pmu_output and self.amplitude_v != 0.0:
            self.station.start(self.train)
        else:  # the output relay is open, or the level is the base: no device sees a pulse
            self.station.record("pmu", "burst with no output")
            self.train.done = n

    def _smu(self, text: str) -> str:
        if text == f"DV{K.SMU_CHANNEL}":
            if self.smu_on:
                self.station.record("smu4200", "output off")
            self.smu_on, self.smu_v = False, 0.0
            return K.ACK
        if text == f"TI{K.SMU_CHANNEL}":
            if not self.smu_on:
                raise _Refused(K.ERR_ILLEGAL_PARAMETER)
            current = self.station.current(S.MATRIX_ROW_READ_SMU, self.smu_v)
            status = "N"
            if abs(current) > self.smu_compliance_a:
                current = math.copysign(self.smu_compliance_a, current)
                status = "C"
            return K.format_reading(status, "A", current)
        prefix = f"DV{K.SMU_CHANNEL},"
        if text.startswith(prefix):
            parts = text[len(prefix) :].split(",")
            if len(parts) != 3 or parts[0] not in ("0", "1", "2", "3"):
                raise _Refused(K.ERR_ILLEGAL_PARAMETER)
            volts = _num(parts[1], -210.0, 210.0)
            compliance = _num(parts[2], K.SMU_MIN_COMPLIANCE_A, 1.0)
            if not self.smu_on:
                self.station.record("smu4200", "output on")
            self.station.record("smu4200", f"level {volts!r} V")
            self.smu_on, self.smu_v, self.smu_compliance_a = True, volts, compliance
            return K.ACK
        raise _Refused(K.ERR_ILLEGAL_PARAMETER)


def _num(
    text: str,
    lo: float,
    hi: float,
    code: int = K.ERR_ILLEGAL_PARAMETER,
    *,
    integer: bool = False,
) -> float:
    try:
        value = S.parse_float(text)
    except ValueError:
        raise _Refused(K.ERR_ILLEGAL_PARAMETER) from None
    if integer and value != int(value):
        raise _Refused(K.ERR_ILLEGAL_PARAMETER)
    if not lo <= value <= hi:
        raise _Refused(code)
    return value
