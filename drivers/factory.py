"""`open_backend`: the one entry point that turns a kind and an address into a backend.

Used by `mrnn-hil train` (through `hil.insitu.backends`), `characterize` and the tests, so the
commands only parse arguments. `kind` is 'sim' (the simulated array), 'visa' (SMU + switch
matrix) or 'serial' (pulse board). Options arrive as plain values (from a config file or the
command line); an unknown option or a bad value is an `InputError` naming it. With
`dry_run=FILE` no instrument is opened: the driver talks to the emulator's firmware in
process and the exact command stream goes to FILE (a new file; nothing is overwritten).

Shapes: the caller needs `rows x cols` devices. The array's real shape is the board's own
(serial), the wiring stated with `array='RxC'` (visa: a switch matrix cannot see the array;
`require_array=True` makes it compulsory, as the commands do), or `array` / the block's
extent (simulator, dry runs). The devices used are the `block='R0:R1,C0:C1'` inside it (the
top-left corner by default); the backend returned sees only that block
(`protocols.block.BlockView`), and a block that leaves the array is refused before anything
is opened or sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers import board as B
from drivers import scpi as S
from protocols.backend import BackendError, CrossbarBackend
from protocols.block import Block, parse_shape, view
from protocols.errors import InputError
from protocols.limits import SafetyLimits
from protocols.loading import short

if TYPE_CHECKING:
    from drivers.dryrun import DryRunLog
    from drivers.transport import LineTransport

KINDS = ("sim", "visa", "serial", "arc1", "arc2")

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
                f"backend option {short(key)} is not known for --backend {kind}; "
                f"known: {', '.join(sorted([*allowed, 'array', 'block']))}"
            )
        typ = allowed[key]
        try:
            out[key] = typ(value)
        except (TypeError, ValueError):
            raise InputError(
                f"backend option {key}={short(value)}: expected {typ.__name__}"
            ) from None
        if typ is float and not out[key] > 0:
            raise InputError(f"backend option {key}={short(value)}: must be > 0")
    return out


def _g_range(opts: dict[str, Any]) -> tuple[float, float] | None:
    lo, hi = opts.pop("g_min_s", None), opts.pop("g_max_s", None)
    if lo is None and hi is None:
        return None
    if lo is None or hi is None or not lo < hi:
        raise InputError(f"backend options g_min_s={lo!r}, g_max_s={hi!r}: give both, min < max")
    return (lo, hi)


def check_preset(name: str, where: str = "--preset") -> None:
    """InputError listing the simulator's presets when `name` is not one (name cut short)."""
    from sim_backend import PRESETS

    if name not in PRESETS:
        raise InputError(
            f"{where}: unknown device preset {short(name)}; known presets: "
            f"{', '.join(sorted(PRESETS))}"
        )


def _preset_range(preset: str) -> tuple[float, float]:
    from sim_backend import get_preset

    check_preset(preset)
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
    array: str | tuple[int, int] | None = None,
    block: str | Block | None = None,
    require_array: bool = False,
    read_v: float | None = None,
    **options: Any,
) -> CrossbarBackend:
    """A `rows x cols` crossbar of the given kind: the `block` of devices inside the array.

    sim: `options` are device overrides of the simulator (`faults__stuck_min_rate`, ...).
    visa: `resource` is the SMU, option `matrix_resource` the switch matrix (any VISA
    resource strings; pyvisa-py '@py' unless `visa_library` says otherwise). serial:
    `port` is a device path or a pyserial URL. `preset` and `seed` configure the simulator,
    the in-process array of a dry run (and the conductance window of the VISA station when
    `g_min_s`/`g_max_s` are not given, as an SMU cannot know it). `read_v` is the read
    voltage (the protocol's; the backend contract checks it against `limits`).
    """
    if kind not in KINDS:
        raise InputError(f"backend kind {short(kind)}: choose one of {', '.join(KINDS)}")
    if rows <= 0 or cols <= 0:
        raise InputError(f"backend shape {rows}x{cols}: rows and cols must be positive")
    blk = Block.parse(block) if block is not None else Block.at_origin(rows, cols)
    if blk.shape != (rows, cols):
        raise InputError(
            f"{blk.describe()} holds {blk.rows}x{blk.cols} devices; {rows}x{cols} are needed"
        )
    shape = parse_shape(array) if array is not None else None
    if shape is not None:
        blk.check_inside(shape, "the array (--array)")
    if kind == "sim":
        if dry_run is not None:
            raise InputError(
                "--dry-run records an instrument's command stream; the simulator sends none: "
                "use it with --backend visa or serial"
            )
        overrides = {k: v for k, v in options.items() if v is not None}
        return _open_sim(shape or blk.extent, blk, limits, preset, seed, overrides, read_v)
    address = resource_or_port or (resource if kind == "visa" else port) or resource or port
    if kind in ("arc1", "arc2"):  # ArC ONE, ArC TWO: drivers/arc_factory.py
        from drivers.arc_factory import open_arc

        arc = open_arc(
            kind, address, blk, shape, limits=limits, dry_run=dry_run, preset=preset,
            seed=seed, read_v=read_v, options=options,
        )  # fmt: skip
        try:
            return view(arc, blk)
        except BaseException:
            arc.close()
            raise
    opts = _coerce(kind, options)
    g_range = _g_range(opts)
    if kind == "visa" and dry_run is None and require_array and shape is None:
        if not address or not opts.get("matrix_resource"):
            _visa_addresses_missing()
        raise InputError(
            "--backend visa needs --array ROWSxCOLS (backend option array): the crossbar's "
            "word and bit lines as wired to the matrix (word line r on matrix column r+1, bit "
            "line c on column ROWS+c+1); a switch matrix cannot see them"
        )
    req = _Request(address, blk, shape, limits, dry_run, preset, seed, g_range, opts, read_v)
    backend = _open_visa(req) if kind == "visa" else _open_serial(req)
    try:
        return view(backend, blk)
    except BaseException:
        backend.close()
        raise


def _open_sim(
    shape: tuple[int, int],
    blk: Block,
    limits: SafetyLimits | None,
    preset: str,
    seed: int,
    overrides: dict[str, Any],
    read_v: float | None,
) -> CrossbarBackend:
    from sim_backend import SimulatedCrossbar

    check_preset(preset)
    try:
        array = SimulatedCrossbar(
            shape[0],
            shape[1],
            preset=preset,
            seed=seed,
            limits=limits,
            **({} if read_v is None else {"read_v": read_v}),
            **overrides,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"backend.options: {' '.join(str(exc).split())[:200]}") from None
    try:
        return view(array, blk)
    except BaseException:
        array.close()
        raise


@dataclass
class _Request:
    """What `open_backend` resolved, handed to the opener of one kind."""

    address: str | None
    block: Block
    shape: tuple[int, int] | None  # the array's shape when stated (`array`)
    limits: SafetyLimits | None
    dry: str | Path | None
    preset: str
    seed: int
    g_range: tuple[float, float] | None
    opts: dict[str, Any]
    read_v: float | None = None

    @property
    def array_shape(self) -> tuple[int, int]:
        """The array as stated, else the smallest one holding the block."""
        return self.shape if self.shape is not None else self.block.extent

    def emulated_array(self) -> CrossbarBackend:
        """The in-process array a dry run's emulated firmware answers from."""
        from drivers.emu_array import make_array

        rows, cols = self.array_shape
        return make_array(rows, cols, preset=self.preset, seed=self.seed)

    def dry_log(self, setup: str) -> DryRunLog:
        from drivers.dryrun import DryRunLog

        assert self.dry is not None
        rows, cols = self.array_shape
        return DryRunLog(
            self.dry,
            f"mrnn-hil dry run, {setup}\nreplies from an emulated {rows}x{cols} array "
            f"(preset {self.preset}, seed {self.seed}); '>' sent, '<' received",
        )


def _visa_addresses_missing() -> None:
    raise InputError(
        "--backend visa needs --resource (the SMU, e.g. TCPIP::127.0.0.1::5025::SOCKET) "
        "and the matrix resource (option matrix_resource, e.g. --matrix-resource "
        "TCPIP::127.0.0.1::5026::SOCKET)"
    )


def _open_visa(req: _Request) -> CrossbarBackend:
    from drivers.transport import VisaTransport
    from drivers.visa_backend import SmuMatrixBackend

    opts, address = req.opts, req.address
    matrix = opts.pop("matrix_resource", None)
    library = opts.pop("visa_library", "@py")
    if req.dry is None and (not address or not matrix):
        _visa_addresses_missing()
    g_range = req.g_range if req.g_range is not None else _preset_range(req.preset)
    rows, cols = req.array_shape
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
        rows,
        cols,
        g_range_s=g_range,
        limits=req.limits,
        read_v=req.read_v,
        **opts,
    )


def _open_serial(req: _Request) -> CrossbarBackend:
    from drivers.serial_backend import PulseBoardBackend
    from drivers.transport import SerialTransport

    opts = req.opts
    baudrate = opts.pop("baudrate", 115200)
    groups = opts.get("batch_groups", B.BOARD_MAX_GROUPS)
    if not 1 <= groups <= B.BOARD_MAX_GROUPS:  # before the port is touched
        raise InputError(f"backend option batch_groups={groups}: allowed 1..{B.BOARD_MAX_GROUPS}")
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
    try:
        if req.dry is not None:
            rows, cols = req.array_shape
        else:  # the board's own array: the block must lie inside it
            rows, cols = _board_shape(transport, float(opts.get("timeout_s", 1.0)))
            if req.shape is not None and req.shape != (rows, cols):
                raise InputError(
                    f"--array {req.shape[0]}x{req.shape[1]}: the board on {req.address} "
                    f"reports its array as {rows}x{cols}"
                )
            req.block.check_inside((rows, cols), f"the board's array on {req.address}")
    except BaseException:
        transport.close()
        raise
    return PulseBoardBackend(
        transport,
        rows,
        cols,
        limits=req.limits,
        g_range_s=req.g_range,
        read_v=req.read_v,
        **opts,
    )


def _board_shape(transport: LineTransport, timeout_s: float, attempts: int = 5) -> tuple[int, int]:
    """The array shape the board reports (`ID?`), before the backend is built for it."""
    from drivers.errors import LinkError

    tag = B.tag_of(0xFFFF)  # far from the backend's own tags, which count up from 1
    last: Exception | None = None
    for _ in range(attempts):
        try:
            transport.write_line(B.encode(tag, B.ID))
            deadline = time.monotonic() + timeout_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    rtag, body = B.decode(transport.read_line(left))
                except B.FrameError:
                    continue
                if rtag == tag:
                    ident = B.parse_identity(body)
                    return (ident.rows, ident.cols)
            last = TimeoutError(f"no reply to ID? within {timeout_s:g} s")
        except (LinkError, B.FrameError) as exc:
            last = exc
        transport.reopen()
    raise BackendError(f"{transport.name}: the board does not identify itself ({last})")
