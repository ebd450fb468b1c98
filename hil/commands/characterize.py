"""`mrnn-hil characterize FILE --out DIR`: run a protocol's pulse trains and judge the device.

C cycles of n SET then n RESET pulses on K devices, read after each; the metrics are judged
against the protocol's acceptance ranges (PASS/FAIL table, exit code 0 only if all pass) and
DIR receives characterization.json (metrics, verdicts, the fitted response model) and PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hil.commands.shapes import add_shape_options
from protocols.backend import BackendError, CrossbarBackend
from protocols.block import Block
from protocols.envelope import Envelope, check_compatible, resolve_envelope
from protocols.errors import InputError
from protocols.protocol_file import load_protocol
from protocols.spec import ProtocolFile

if TYPE_CHECKING:
    from hil.characterize.characterization import Characterization

# hil.characterize (scipy.optimize) is imported where it is used: every `mrnn-hil` command
# loads this module, and most never characterise anything.

KINDS = ("sim", "visa", "serial", "arc1", "arc2")


def devices_block(args: argparse.Namespace, protocol: ProtocolFile) -> tuple[Block, int]:
    """The block of devices to characterise and how many of them (first K, row by row).

    `--block` names it (all its devices unless `--devices` asks for fewer); otherwise it is
    the near-square corner holding the K devices of `--devices` or of the protocol file.
    """
    if args.block is not None:
        blk = Block.parse(args.block)
        devices = args.devices if args.devices is not None else blk.rows * blk.cols
        if devices > blk.rows * blk.cols:
            raise InputError(
                f"--devices {devices}: {blk.describe()} holds only {blk.rows * blk.cols}"
            )
        return blk, devices
    devices = args.devices or protocol.characterize.devices
    from hil.characterize.characterization import device_grid

    return Block.at_origin(*device_grid(devices)), devices


def envelope_of(args: argparse.Namespace, protocol: ProtocolFile) -> Envelope:
    """The protocol's safety envelope (limits, read voltage), resolved as `train` does."""
    from sim_backend import PRESETS, get_preset
    from sim_backend.crossbar import switching_threshold

    preset = args.preset or protocol.preset
    switching = switching_threshold(get_preset(preset)) if preset in PRESETS else None
    return resolve_envelope(
        pulses=protocol.pulses,
        base_limits=protocol.limits.safety_limits(),
        scheme=protocol.scheme,
        read_v=protocol.read.voltage_v,
        switching_v=switching,
        base_source=f"protocol {args.file}",
    )


def open_backend(
    args: argparse.Namespace, protocol: ProtocolFile, blk: Block, env: Envelope
) -> CrossbarBackend:
    """The block's devices on the chosen backend, through `drivers.open_backend`, with the
    envelope's limits and read voltage."""
    from drivers import open_backend as open_array

    preset = args.preset or protocol.preset
    if args.backend == "sim" and preset is None:
        raise InputError(
            "--backend sim needs --preset NAME (the protocol file names no 'preset'); "
            "`mrnn-hil devices` lists them"
        )
    try:
        return open_array(
            args.backend,
            rows=blk.rows,
            cols=blk.cols,
            limits=env.limits,
            read_v=env.read_v,
            preset=preset or "ideal",
            seed=args.seed,
            resource=args.resource,
            port=args.port,
            matrix_resource=getattr(args, "matrix_resource", None),
            dry_run=getattr(args, "dry_run", None),
            array=args.array,
            block=blk,
            require_array=True,
            firmware=getattr(args, "firmware", None),
            **_backend_options(args),
        )
    except BackendError as exc:  # no link, wrong port, wrong identity: nothing was sent
        where = args.port or args.resource or "the instrument"
        raise InputError(f"--backend {args.backend}: cannot open {where}: {exc}") from None


def _option_value(text: str) -> Any:
    """A --backend-option value: int, float, true/false, or the text itself."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


#: Set by the protocol file or by their own options, never through --backend-option.
_NOT_OPTIONS = ("read_v", "limits", "preset", "seed", "port", "resource", "dry_run", "array",
                "block", "require_array", "firmware", "matrix_resource")  # fmt: skip


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """--backend-option KEY=VALUE: driver options (instruments), device settings (sim)."""
    out: dict[str, Any] = {}
    for item in getattr(args, "backend_option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--backend-option {item!r}: write KEY=VALUE")
        if key in _NOT_OPTIONS:
            raise InputError(
                f"--backend-option {key}: set by the protocol file or its own option, not here"
            )
        out[key] = _option_value(value)
    return out


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "characterize",
        help="run a protocol's pulse trains on devices and judge them against its spec",
        description="C cycles of n SET then n RESET pulses on K devices, read after each "
        "pulse; extract G_min/G_max, on/off, states, NL (NeuroSim form), asymmetry, C2C and "
        "D2D sigma; judge against the protocol's acceptance ranges. Exit 0 if all pass, 1 if "
        "any fails, 2 on bad input.",
    )
    parser.add_argument("file", metavar="FILE", help="protocol file (YAML or JSON)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument("--backend", default="sim", choices=KINDS)
    parser.add_argument("--preset", default=None, help="simulator preset (default: the file's)")
    parser.add_argument(
        "--devices",
        type=_positive,
        default=None,
        metavar="K",
        help="devices to characterise (the first K of --block, row by row; default: the "
        "protocol file's, in the top-left corner)",
    )
    add_shape_options(parser)
    parser.add_argument("--cycles", type=_positive, default=None, metavar="C")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="simulator seed")
    parser.add_argument("--resource", default=None, help="VISA resource (instrument backends)")
    parser.add_argument("--port", default=None, help="serial port (instrument backends)")
    parser.add_argument("--matrix-resource", default=None, help="switch-matrix VISA resource")
    parser.add_argument("--firmware", default=None, help="ArC TWO firmware file (--backend arc2)")
    parser.add_argument(
        "--backend-option",
        action="append",
        metavar="KEY=VALUE",
        help="a backend option (instruments: driver options such as timeout_s; sim: device "
        "settings such as readout__format=float32_resistance); repeatable",
    )
    parser.add_argument(
        "--dry-run", default=None, metavar="FILE", help="record the command stream to FILE"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def format_table(result: Characterization) -> str:
    """The PASS/FAIL table, one metric a row."""
    from hil.characterize.characterization import METRIC_UNITS

    rows = [("metric", "value", "unit", "allowed", "verdict", "reason")]
    for v in result.verdicts:
        rows.append(
            (
                v.metric,
                f"{v.value:.4g}",
                METRIC_UNITS.get(v.metric, ""),
                v.allowed,
                "PASS" if v.passed else "FAIL",
                v.reason,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    from hil.characterize.characterization import characterize, to_json

    protocol = load_protocol(args.file)
    blk, devices = devices_block(args, protocol)
    cycles = args.cycles or protocol.characterize.cycles
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    bar: Any = None

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    env = envelope_of(args, protocol)
    with open_backend(args, protocol, blk, env) as backend:
        info = backend.info()
        # nominal pulses only, one device at a time: refuse before the first pulse
        check_compatible(env, info, with_scheme=False)
        if not args.quiet:  # only once the devices are there: an error stays one line
            from tqdm import tqdm

            bar = tqdm(
                total=2 * cycles * protocol.characterize.pulses_per_phase,
                unit="pulse",
                desc="characterize",
                file=sys.stderr,
                leave=False,
            )
        try:
            traces, result = characterize(
                backend, protocol, devices=devices, cycles=cycles, progress=progress
            )
        finally:
            if bar is not None:
                bar.close()
    out.mkdir(parents=True, exist_ok=True)
    from hil.characterize.plots import plot_histograms, plot_traces

    figures = [
        plot_traces(traces, result, out / "traces.png").name,
        plot_histograms(result, out / "histograms.png").name,
    ]
    extra = {
        "backend": {
            "kind": info.kind,
            "name": info.name,
            "preset": args.preset or protocol.preset,
            "seed": args.seed,
            "array": info.details.get("array", f"{info.rows}x{info.cols}"),
            "block": str(blk),
        },
        "experiment": {
            "devices": devices,
            "cycles": cycles,
            "pulses_per_phase": protocol.characterize.pulses_per_phase,
            "state": protocol.characterize.state,
            "read_averages": protocol.read.averages,
        },
        "figures": figures,
    }
    _write_atomic(out / "characterization.json", to_json(result, protocol, extra))
    print(
        f"characterize: protocol {protocol.name!r} on {info.kind} backend {info.name!r}, "
        f"{devices} devices of {blk.describe()} x {cycles} cycles x "
        f"{protocol.characterize.pulses_per_phase} pulses per phase"
    )
    print(format_table(result))
    if result.response is not None:
        model = json.dumps(result.response.model_dump())
        print(f"fitted response: {model}")
    if result.stuck:
        print(f"stuck devices (excluded): {result.stuck}")
    verdict = "PASS" if result.passed else "FAIL"
    print(
        f"{verdict}: {sum(v.passed for v in result.verdicts)}/{len(result.verdicts)} metrics "
        f"within range; wrote {out / 'characterization.json'} and {', '.join(figures)}"
    )
    return 0 if result.passed else 1
