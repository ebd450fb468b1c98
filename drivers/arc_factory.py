"""Opening an ArC ONE (`arc1`) or ArC TWO (`arc2`) backend from plain options.

`drivers.open_backend` hands these two kinds here. Options arrive as plain values (a config
file's `backend.options`, the command line); an unknown option or a bad value is an
`InputError` naming it. With `dry_run=FILE` nothing is opened: the driver talks to the
emulated board in process and FILE receives the exact command stream.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.board_block import array_on_board
from protocols.backend import BackendError, CrossbarBackend
from protocols.block import Block
from protocols.errors import InputError
from protocols.limits import SafetyLimits


def _number(kind: type, *, positive: bool = False, minimum: float | None = None) -> Callable:
    def conv(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("not a number")
        out = kind(value)
        if positive and not out > 0:
            raise ValueError("must be > 0")
        if minimum is not None and not out >= minimum:
            raise ValueError(f"must be >= {minimum:g}")
        return out

    return conv


def _choice(*allowed: str) -> Callable[[Any], str]:
    def conv(value: Any) -> str:
        if str(value) not in allowed:
            raise ValueError(f"choose one of {', '.join(allowed)}")
        return str(value)

    return conv


_COMMON: dict[str, Callable[[Any], Any]] = {
    "g_min_s": _number(float, positive=True),
    "g_max_s": _number(float, positive=True),
}
ARC1_OPTIONS: dict[str, Callable[[Any], Any]] = {
    **_COMMON,
    "read_mode": _choice("classic", "tia", "tia4p"),
    "session": _choice("local", "external_bnc"),
    "half_select": _choice("v2", "v3"),
    "cycles": _number(int, minimum=1),
    "timeout_s": _number(float, positive=True),
    "retries": _number(int, minimum=1),
    "reset_wait_s": _number(float, minimum=0.0),
    "version_timeout_s": _number(float, positive=True),
    "write_delay_s": _number(float, minimum=0.0),
    "per_read_s": _number(float, minimum=0.0),
    "per_pulse_s": _number(float, minimum=0.0),
    "baudrate": _number(int, positive=True),
}
ARC2_OPTIONS: dict[str, Callable[[Any], Any]] = {
    **_COMMON,
    "firmware": str,
    "idle": _choice("soft_gnd", "hard_gnd", "float"),
    "parallel": _choice("auto", "rows", "cols"),
    "chunk_ops": _number(int, minimum=1),
}


def coerce(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    table = ARC1_OPTIONS if kind == "arc1" else ARC2_OPTIONS
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in table:
            raise InputError(
                f"backend option {key!r} is not known for --backend {kind}; "
                f"known: {', '.join(sorted(table))}"
            )
        try:
            out[key] = table[key](value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"backend option {key}={value!r}: {exc}") from None
    return out


def _g_range(opts: dict[str, Any], preset: str) -> tuple[float, float]:
    lo, hi = opts.pop("g_min_s", None), opts.pop("g_max_s", None)
    if lo is None and hi is None:
        from sim_backend import get_preset

        cfg = get_preset(preset)
        return (float(cfg.model.g_min_s), float(cfg.model.g_max_s))
    if lo is None or hi is None or not lo < hi:
        raise InputError(f"backend options g_min_s={lo!r}, g_max_s={hi!r}: give both, min < max")
    return (lo, hi)


def _dry_log(path: str | Path, setup: str, shape: tuple[int, int], preset: str, seed: int) -> Any:
    from drivers.dryrun import DryRunLog

    return DryRunLog(
        path,
        f"mrnn-hil dry run, {setup}\nreplies from an emulated {shape[0]}x{shape[1]} array "
        f"(preset {preset}, seed {seed}); '>' sent, '<' received",
    )


def open_arc(
    kind: str,
    address: str | None,
    blk: Block,
    shape: tuple[int, int] | None,
    *,
    limits: SafetyLimits | None,
    dry_run: str | Path | None,
    preset: str,
    seed: int,
    options: dict[str, Any],
    read_v: float | None = None,
) -> CrossbarBackend:
    """An ArC ONE on `address` (a serial port or pyserial URL), or an ArC TWO with board id
    `address` (None: the only board found) and option `firmware`, driven as an array of
    `shape` (default: the block's extent) that holds the block `blk`. `read_v` is the read
    voltage (the protocol's; the backend contract checks it against `limits`). The caller
    wraps the result in the block's view."""
    opts = coerce(kind, options)
    opts["read_v"] = read_v
    g_range = _g_range(opts, preset)
    if kind == "arc1":
        array = array_on_board("ArC ONE", (32, 32), blk, shape)
        return _open_arc1(address, array, limits, dry_run, preset, seed, g_range, opts)
    array = array_on_board("ArC TWO", (32, 32), blk, shape)
    return _open_arc2(address, array, limits, dry_run, preset, seed, g_range, opts)


def _open_arc1(
    address: str | None,
    array: tuple[int, int],
    limits: SafetyLimits | None,
    dry: str | Path | None,
    preset: str,
    seed: int,
    g_range: tuple[float, float],
    opts: dict[str, Any],
) -> CrossbarBackend:
    from drivers.arc1_backend import Arc1Backend
    from drivers.arc1_link import Arc1Link, DryRunArc1Link, SerialArc1Link

    baudrate = opts.pop("baudrate", None)
    link: Arc1Link
    if dry is not None:
        from drivers.emu_arc1 import Arc1Core
        from drivers.emu_array import make_array

        core = Arc1Core(make_array(*array, preset=preset, seed=seed))
        log = _dry_log(dry, f"ArC ONE on {address or '(none)'}", array, preset, seed)
        link = DryRunArc1Link(log, core.handle)
        opts.update(reset_wait_s=0.0, write_delay_s=0.0)
    else:
        if not address:
            raise InputError(
                "--backend arc1 needs --port (the board's serial port, e.g. /dev/ttyACM0 or "
                "COM5, the path printed by `mrnn-hil emulate arc1`, or a pyserial URL)"
            )
        kwargs = {} if baudrate is None else {"baudrate": baudrate}
        link = SerialArc1Link(address, **kwargs)
    return Arc1Backend(link, *array, limits=limits, g_range_s=g_range, **opts)


def _open_arc2(
    address: str | None,
    array: tuple[int, int],
    limits: SafetyLimits | None,
    dry: str | Path | None,
    preset: str,
    seed: int,
    g_range: tuple[float, float],
    opts: dict[str, Any],
) -> CrossbarBackend:
    firmware = opts.pop("firmware", None)
    if address is not None:
        try:
            board_id: int | None = int(address)
        except ValueError:
            raise InputError(
                f"--backend arc2: --port is the board id (0, 1, ...), not {address!r}"
            ) from None
    else:
        board_id = None
    api: Any
    if dry is not None:
        from drivers.emu_arc2 import Arc2Board, Pyarc2Double
        from drivers.emu_array import make_array

        log = _dry_log(dry, f"ArC TWO board {address or '(first found)'}", array, preset, seed)
        log.acquire()
        api = Pyarc2Double(Arc2Board(make_array(*array, preset=preset, seed=seed), log=log))
        firmware = firmware or "(firmware)"
        opts["on_close"] = log.release
    else:
        try:
            import pyarc2
        except ImportError:
            raise InputError("--backend arc2 needs pyarc2: pip install 'mrnn-hil[arc2]'") from None
        api = pyarc2
        if not firmware or not Path(firmware).is_file():
            raise InputError(
                f"--backend arc2 needs the board's firmware file (backend option firmware, "
                f"--firmware FILE); got {firmware!r}"
            )
    return _arc2_instrument(api, board_id, str(firmware), array, limits, g_range, opts)


def _arc2_instrument(
    api: Any,
    board_id: int | None,
    firmware: str,
    array: tuple[int, int],
    limits: SafetyLimits | None,
    g_range: tuple[float, float],
    opts: dict[str, Any],
) -> CrossbarBackend:
    from drivers.arc2_backend import Arc2Backend

    try:
        ids = list(api.find_ids())
    except api.ArC2Error as exc:
        raise BackendError(f"ArC TWO: cannot list boards: {exc}") from exc
    if board_id is None:
        if len(ids) != 1:
            raise BackendError(
                f"ArC TWO: {len(ids)} boards found ({ids}); name one with --port ID"
                if ids
                else "ArC TWO: no board found (pyarc2.find_ids() is empty)"
            )
        board_id = ids[0]
    elif board_id not in ids:
        raise BackendError(f"ArC TWO: no board {board_id}; found {ids}")
    try:
        inst = api.Instrument(port=board_id, firmware=firmware, init=True)
    except api.ArC2Error as exc:
        raise BackendError(f"ArC TWO: cannot open board {board_id}: {exc}") from exc
    return Arc2Backend(
        inst, api, *array, limits=limits, g_range_s=g_range, name=f"ArC TWO {board_id}", **opts
    )
