"""`open_backend`: the one entry point that turns a kind and an address into a backend.

Used by `mrnn-hil train`, `characterize` and the tests. Options arrive as plain values
(from a config file or the command line); an unknown option or a bad value is an
`InputError` naming it. With `dry_run=FILE` no instrument is opened: the driver talks to
the emulator's firmware in process and the exact command stream goes to FILE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers import scpi as S
from protocols.backend import CrossbarBackend
from protocols.errors import InputError
from protocols.limits import SafetyLimits

if TYPE_CHECKING:
    from drivers.dryrun import DryRunLog

KINDS = ("visa", "serial")

_VISA_OPTIONS = {
    "matrix_resource": str,
    "visa_library": str,
    "timeout_s": float,
    "retries": int,
    "min_width_s": float,
    "columns_per_slot": int,
    "slots": int,
    "g_min_s": float,
    "g_max_s": float,
}
_SERIAL_OPTIONS = {
    "baudrate": int,
    "batch_groups": int,
    "timeout_s": float,
    "retries": int,
    "g_min_s": float,
    "g_max_s": float,
}


def _coerce(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = _VISA_OPTIONS if kind == "visa" else _SERIAL_OPTIONS
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in allowed:
            raise InputError(
                f"backend option {key!r} is not known for --backend {kind}; "
                f"known: {', '.join(sorted(allowed))}"
            )
        typ = allowed[key]
        try:
            out[key] = typ(value)
        except (TypeError, ValueError):
            raise InputError(f"backend option {key}={value!r}: expected {typ.__name__}") from None
        if typ is float and not out[key] > 0:
            raise InputError(f"backend option {key}={value!r}: must be > 0")
    return out


def _g_range(opts: dict[str, Any]) -> tuple[float, float] | None:
    lo, hi = opts.pop("g_min_s", None), opts.pop("g_max_s", None)
    if lo is None and hi is None:
        return None
    if lo is None or hi is None or not lo < hi:
        raise InputError(f"backend options g_min_s={lo!r}, g_max_s={hi!r}: give both, min < max")
    return (lo, hi)


def _preset_range(preset: str) -> tuple[float, float]:
    from sim_backend import get_preset

    cfg = get_preset(preset)
    return (float(cfg.model.g_min_s), float(cfg.model.g_max_s))


def open_backend(
    kind: str,
    resource_or_port: str | None = None,
    rows: int = 0,
    cols: int = 0,
    *,
    limits: SafetyLimits | None = None,
    dry_run: str | Path | None = None,
    preset: str = "ideal",
    seed: int = 0,
    resource: str | None = None,
    port: str | None = None,
    read_v: float | None = None,
    **options: Any,
) -> CrossbarBackend:
    """A VISA (`kind='visa'`) or serial (`kind='serial'`) crossbar backend.

    visa: `resource` is the SMU, option `matrix_resource` the switch matrix (any VISA
    resource strings; pyvisa-py '@py' unless `visa_library` says otherwise). serial:
    `port` is a device path or a pyserial URL. `preset` and `seed` configure only the
    in-process array of a dry run (and the conductance window of the VISA station when
    `g_min_s`/`g_max_s` are not given, as an SMU cannot know it). `read_v` is the read
    voltage (the protocol's; the backend contract checks it against `limits`).
    """
    if kind not in KINDS:
        raise InputError(f"backend kind {kind!r}: choose one of {', '.join(KINDS)}")
    if rows <= 0 or cols <= 0:
        raise InputError(f"backend shape {rows}x{cols}: rows and cols must be positive")
    address = resource_or_port or (resource if kind == "visa" else port) or resource or port
    dry = dry_run
    opts = _coerce(kind, options)
    g_range = _g_range(opts)
    req = _Request(address, rows, cols, limits, dry, preset, seed, g_range, opts, read_v)
    return _open_visa(req) if kind == "visa" else _open_serial(req)


@dataclass
class _Request:
    """What `open_backend` resolved, handed to the opener of one kind."""

    address: str | None
    rows: int
    cols: int
    limits: SafetyLimits | None
    dry: str | Path | None
    preset: str
    seed: int
    g_range: tuple[float, float] | None
    opts: dict[str, Any]
    read_v: float | None = None

    def emulated_array(self) -> CrossbarBackend:
        """The in-process array a dry run's emulated firmware answers from."""
        from drivers.emu_array import make_array

        return make_array(self.rows, self.cols, preset=self.preset, seed=self.seed)

    def dry_log(self, setup: str) -> DryRunLog:
        from drivers.dryrun import DryRunLog

        assert self.dry is not None
        return DryRunLog(
            self.dry,
            f"mrnn-hil dry run, {setup}\nreplies from an emulated {self.rows}x{self.cols} array "
            f"(preset {self.preset}, seed {self.seed}); '>' sent, '<' received",
        )


def _open_visa(req: _Request) -> CrossbarBackend:
    from drivers.transport import LineTransport, VisaTransport
    from drivers.visa_backend import SmuMatrixBackend

    opts, address = req.opts, req.address
    matrix = opts.pop("matrix_resource", None)
    library = opts.pop("visa_library", "@py")
    if req.dry is None and (not address or not matrix):
        raise InputError(
            "--backend visa needs --resource (the SMU, e.g. TCPIP::127.0.0.1::5025::SOCKET) "
            "and the matrix resource (option matrix_resource, e.g. --matrix-resource "
            "TCPIP::127.0.0.1::5026::SOCKET)"
        )
    g_range = req.g_range if req.g_range is not None else _preset_range(req.preset)
    smu_t: LineTransport
    matrix_t: LineTransport
    if req.dry is not None:
        from drivers.dryrun import DryRunTransport
        from drivers.emu_scpi import MatrixCore, SmuCore, Station

        station = Station(
            req.emulated_array(), min_width_s=opts.get("min_width_s", S.SMU_MIN_WIDTH_S)
        )
        smu_core, matrix_core = SmuCore(station), MatrixCore(station)
        log = req.dry_log(f"VISA station: SMU {address or '(none)'}, matrix {matrix or '(none)'}")

        def smu_reply(line: bytes) -> list[bytes]:
            return [r.encode("ascii") for r in smu_core.handle(line)]

        def matrix_reply(line: bytes) -> list[bytes]:
            return [r.encode("ascii") for r in matrix_core.handle(line)]

        smu_t = DryRunTransport("smu", log, smu_reply)
        matrix_t = DryRunTransport("matrix", log, matrix_reply)
    else:
        assert address is not None and matrix is not None
        smu_t = VisaTransport(address, visa_library=library)
        try:
            matrix_t = VisaTransport(matrix, visa_library=library)
        except BaseException:
            smu_t.close()
            raise
    return SmuMatrixBackend(
        smu_t,
        matrix_t,
        req.rows,
        req.cols,
        g_range_s=g_range,
        limits=req.limits,
        read_v=req.read_v,
        **opts,
    )


def _open_serial(req: _Request) -> CrossbarBackend:
    from drivers.serial_backend import PulseBoardBackend
    from drivers.transport import LineTransport, SerialTransport

    opts = req.opts
    baudrate = opts.pop("baudrate", 115200)
    transport: LineTransport
    if req.dry is not None:
        from drivers.dryrun import DryRunTransport
        from drivers.emu_board import BoardCore

        core = BoardCore(req.emulated_array())
        log = req.dry_log(f"pulse board on {req.address or '(none)'}")
        transport = DryRunTransport("board", log, core.handle)
    else:
        if not req.address:
            raise InputError(
                "--backend serial needs --port (a device such as /dev/ttyACM0, a pty path "
                "printed by `mrnn-hil emulate serial`, or a pyserial URL)"
            )
        transport = SerialTransport(req.address, baudrate=baudrate)
    return PulseBoardBackend(
        transport,
        req.rows,
        req.cols,
        limits=req.limits,
        g_range_s=req.g_range,
        read_v=req.read_v,
        **opts,
    )
