"""`mrnn-hil emulate`: serve an emulated instrument on loopback, backed by a simulated array.

`emulate scpi --port P` serves the pulse source (a B2900 SMU, or with `--source 4200a` a
4200A-SCS with a 4225-PMU, NUL-terminated like KXCI on the LAN) on TCP 127.0.0.1:P (VISA
resource TCPIP::127.0.0.1::P::SOCKET) and the switch matrix on P+1; `emulate serial` opens a
pseudo-terminal and prints its path; `emulate arc1` serves an ArC ONE on a pseudo-terminal
(or, with `--tcp PORT`, as socket://127.0.0.1:PORT) and prints what to open. Faults can be
injected at given rates so that a driver's recovery can be watched. Runs until Ctrl-C or
`--duration` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from typing import Any

from protocols.errors import InputError


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"rate {value:g} must be in [0, 1]")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"{value:g} must be >= 0")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=8, help="array rows (default 8)")
    p.add_argument("--cols", type=int, default=8, help="array columns (default 8)")
    p.add_argument(
        "--preset", default="ideal", help="simulator preset or preset file (mrnn-hil devices)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated array")
    p.add_argument(
        "--latency", type=_positive, default=0.0, metavar="S", help="every reply waits S"
    )
    p.add_argument("--spike-rate", type=_rate, default=0.0, help="late-reply probability")
    p.add_argument("--spike", type=_positive, default=0.3, metavar="S", help="late-reply delay")
    p.add_argument("--drop-rate", type=_rate, default=0.0, help="lost-reply probability")
    p.add_argument("--garble-rate", type=_rate, default=0.0, help="corrupted-bytes probability")
    p.add_argument("--disconnect-rate", type=_rate, default=0.0, help="dropped-link probability")
    p.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")
    p.add_argument("--duration", type=_positive, default=0.0, metavar="S", help="stop after S s")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "emulate",
        help="serve an emulated instrument (SCPI over TCP; pulse board, ArC ONE on a pty)",
        description="Serve an emulated instrument on 127.0.0.1 or a pseudo-terminal.",
    )
    sub = p.add_subparsers(dest="instrument", metavar="INSTRUMENT", required=True)
    scpi = sub.add_parser(
        "scpi", help="B2900 SMU or 4200A-SCS pulse source + 707B matrix on loopback TCP"
    )
    scpi.add_argument(
        "--port",
        type=int,
        required=True,
        help="source TCP port on 127.0.0.1 (0: any free ports, printed)",
    )
    scpi.add_argument(
        "--source",
        choices=("b2900", "4200a"),
        default="b2900",
        help="pulse source: a B2900 SMU (default) or a 4200A-SCS with a 4225-PMU",
    )
    scpi.add_argument(
        "--matrix-port", type=int, help="matrix TCP port (default PORT+1; any with --port 0)"
    )
    scpi.add_argument(
        "--min-width",
        type=float,
        default=None,
        metavar="S",
        help="shortest pulse the SMU accepts (default 50e-6, the B2900's)",
    )
    _common(scpi)
    serial = sub.add_parser("serial", help="crossbar pulse board on a pseudo-terminal")
    _common(serial)
    arc1 = sub.add_parser(
        "arc1", help="ArC ONE on a pseudo-terminal (or socket:// on 127.0.0.1 with --tcp)"
    )
    arc1.add_argument(
        "--tcp", type=int, default=None, metavar="PORT",
        help="serve on 127.0.0.1:PORT (0: any free port) instead of a pseudo-terminal",
    )  # fmt: skip
    arc1.add_argument(
        "--old-firmware", action="store_true", help="no reply to the version query (999)"
    )
    arc1.add_argument(
        "--reset-time", type=_positive, default=0.5, metavar="S",
        help="the board ignores input this long after 00 (default 0.5)",
    )  # fmt: skip
    arc1.add_argument(
        "--log", metavar="FILE", help="on exit, write every pulse applied (CSV: W, B, V, width)"
    )
    _common(arc1)
    arc1.set_defaults(rows=32, cols=32)


def _faults(args: argparse.Namespace) -> Any:
    from drivers.faults import FaultConfig

    return FaultConfig(
        latency_s=args.latency,
        spike_rate=args.spike_rate,
        spike_s=args.spike,
        drop_rate=args.drop_rate,
        garble_rate=args.garble_rate,
        disconnect_rate=args.disconnect_rate,
        seed=args.fault_seed,
    )


def _wait(args: argparse.Namespace) -> None:
    done = threading.Event()
    with contextlib.suppress(KeyboardInterrupt):
        done.wait(args.duration if args.duration > 0 else None)


def run(args: argparse.Namespace) -> int:
    from drivers.emu_array import make_array

    if args.rows <= 0 or args.cols <= 0:
        raise InputError(f"--rows {args.rows} --cols {args.cols}: both must be positive")
    if args.spike_rate + args.drop_rate + args.garble_rate + args.disconnect_rate > 1.0:
        raise InputError("the fault rates add up to more than 1")
    array = make_array(args.rows, args.cols, preset=args.preset, seed=args.seed)
    faults = _faults(args)
    if args.instrument == "scpi":
        return _serve_scpi(args, array, faults)
    if args.instrument == "arc1":
        return _serve_arc1(args, array, faults)
    return _serve_serial(args, array, faults)


def _serve_scpi(args: argparse.Namespace, array: Any, faults: Any) -> int:
    from drivers import scpi
    from drivers.emu_kxci import KxciCore
    from drivers.emu_scpi import Station
    from drivers.emu_tcp import ScpiEmulator

    if not 0 <= args.port < 65535:
        raise InputError(f"--port {args.port}: choose a TCP port in 1..65534, or 0 for any")
    min_width = args.min_width if args.min_width is not None else scpi.SMU_MIN_WIDTH_S
    if not min_width > 0:
        raise InputError(f"--min-width {min_width}: must be > 0")
    station = Station(array, min_width_s=min_width)
    source = KxciCore(station) if args.source == "4200a" else None
    try:
        emu = ScpiEmulator(
            station, faults, port=args.port, matrix_port=args.matrix_port, source=source
        )
    except OSError as exc:
        raise InputError(
            f"--port {args.port}: cannot listen on 127.0.0.1: {exc.strerror}"
        ) from None
    # a stop request while the addresses are printed ends the serving as one during the wait
    with emu, contextlib.suppress(KeyboardInterrupt):
        label = "4200A" if args.source == "4200a" else "SMU"
        print(f"{label:<7} {emu.smu_resource}", flush=True)
        print(f"matrix  {emu.matrix_resource}", flush=True)
        print(
            f"array   {args.rows}x{args.cols} preset {args.preset} seed {args.seed}; Ctrl-C stops",
            flush=True,
        )
        _wait(args)
    station.flush()
    trains = len(station.log)
    pulses = sum(t.count for t in station.log)
    print(f"stopped: {trains} pulse trains, {pulses} pulses, {emu.lines} lines", file=sys.stderr)
    return 0


def _serve_serial(args: argparse.Namespace, array: Any, faults: Any) -> int:
    from drivers.emu_board import BoardCore
    from drivers.emu_serial import SerialEmulator

    core = BoardCore(array)
    # a stop request while the addresses are printed ends the serving as one during the wait
    with SerialEmulator(core, faults) as emu, contextlib.suppress(KeyboardInterrupt):
        print(emu.path, flush=True)
        print(
            f"pulse board {args.rows}x{args.cols} preset {args.preset} seed {args.seed}; "
            "Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        _wait(args)
    batches = core.log.entries
    print(
        f"stopped: {len(batches)} batches, {sum(b.pulses for b in batches)} pulses, "
        f"{emu.frames} frames",
        file=sys.stderr,
    )
    return 0


def _serve_arc1(args: argparse.Namespace, array: Any, faults: Any) -> int:
    from drivers.emu_arc1 import FIRMWARE, Arc1Core, Arc1Emulator

    if args.rows > 32 or args.cols > 32:
        raise InputError(f"--rows {args.rows} --cols {args.cols}: an ArC ONE has 32 x 32 lines")
    core = Arc1Core(array, firmware=None if args.old_firmware else FIRMWARE)
    transport = "pty" if args.tcp is None else "tcp"
    try:
        emu = Arc1Emulator(
            core, faults, transport=transport, port=args.tcp or 0, reset_s=args.reset_time
        )
    except OSError as exc:
        raise InputError(f"--tcp {args.tcp}: cannot listen on 127.0.0.1: {exc.strerror}") from None
    # a stop request while the addresses are printed ends the serving as one during the wait
    with emu, contextlib.suppress(KeyboardInterrupt):
        print(emu.url, flush=True)
        print(
            f"ArC ONE, {args.rows}x{args.cols} crossbar, preset {args.preset} seed {args.seed}; "
            "Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        _wait(args)
    pulses = core.log.entries
    if args.log:
        try:
            with open(args.log, "w", encoding="ascii") as fh:
                fh.write("seq,word,bit,amplitude_v,width_s\n")
                for p in pulses:
                    fh.write(f"{p.seq},{p.word},{p.bit},{p.amplitude_v!r},{p.width_s!r}\n")
        except OSError as exc:
            raise InputError(f"--log {args.log}: cannot write ({exc.strerror})") from None
    print(
        f"stopped: {len(pulses)} pulses, {emu.commands} commands, {len(core.ignored)} ignored",
        file=sys.stderr,
    )
    return 0
