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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil.characterize.characterization import (
    METRIC_UNITS,
    Characterization,
    characterize,
    device_grid,
    to_json,
)
from protocols.backend import BackendError, CrossbarBackend
from protocols.errors import InputError
from protocols.protocol_file import load_protocol
from protocols.spec import ProtocolFile

#: Backend kinds and how to open each: (args, protocol, rows, cols) -> backend.
BackendOpener = Callable[[argparse.Namespace, ProtocolFile, int, int], CrossbarBackend]


def _open_sim(args: argparse.Namespace, protocol: ProtocolFile, rows: int, cols: int) -> Any:
    from sim_backend.crossbar import SimulatedCrossbar

    preset = args.preset or protocol.preset
    if preset is None:
        raise InputError(
            "--backend sim needs --preset NAME (the protocol file names no 'preset'); "
            "`mrnn-hil devices` lists them"
        )
    return SimulatedCrossbar(
        rows, cols, preset=preset, seed=args.seed, limits=protocol.limits.safety_limits()
    )


def _open_instrument(
    args: argparse.Namespace, protocol: ProtocolFile, rows: int, cols: int
) -> CrossbarBackend:
    """Real instruments come from `drivers.open_backend(kind, rows=, cols=, limits=, ...)`."""
    try:
        from drivers import open_backend
    except ImportError:
        raise InputError(f"--backend {args.backend}: instrument drivers are unavailable") from None
    try:
        return open_backend(
            args.backend,
            rows=rows,
            cols=cols,
            limits=protocol.limits.safety_limits(),
            preset=args.preset or protocol.preset or "ideal",
            seed=args.seed,
            resource=args.resource,
            port=args.port,
            matrix_resource=getattr(args, "matrix_resource", None),
            dry_run=getattr(args, "dry_run", None),
        )
    except BackendError as exc:  # no link, wrong port, wrong identity: nothing was sent
        where = args.port or args.resource or "the instrument"
        raise InputError(f"--backend {args.backend}: cannot open {where}: {exc}") from None


#: The one place a backend kind becomes a backend; add instrument kinds here.
BACKENDS: dict[str, BackendOpener] = {
    "sim": _open_sim,
    "visa": _open_instrument,
    "serial": _open_instrument,
}


def open_backend(
    args: argparse.Namespace, protocol: ProtocolFile, rows: int, cols: int
) -> CrossbarBackend:
    try:
        opener = BACKENDS[args.backend]
    except KeyError:
        raise InputError(
            f"--backend {args.backend!r}: choose one of {', '.join(BACKENDS)}"
        ) from None
    return opener(args, protocol, rows, cols)


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
    parser.add_argument("--backend", default="sim", choices=sorted(BACKENDS))
    parser.add_argument("--preset", default=None, help="simulator preset (default: the file's)")
    parser.add_argument("--devices", type=_positive, default=None, metavar="K")
    parser.add_argument("--cycles", type=_positive, default=None, metavar="C")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="simulator seed")
    parser.add_argument("--resource", default=None, help="VISA resource (instrument backends)")
    parser.add_argument("--port", default=None, help="serial port (instrument backends)")
    parser.add_argument("--matrix-resource", default=None, help="switch-matrix VISA resource")
    parser.add_argument(
        "--dry-run", default=None, metavar="FILE", help="record the command stream to FILE"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def format_table(result: Characterization) -> str:
    """The PASS/FAIL table, one metric a row."""
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
    protocol = load_protocol(args.file)
    devices = args.devices or protocol.characterize.devices
    cycles = args.cycles or protocol.characterize.cycles
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    rows, cols = device_grid(devices)
    progress = None
    bar: Any = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(
            total=2 * cycles * protocol.characterize.pulses_per_phase,
            unit="pulse",
            desc="characterize",
            file=sys.stderr,
            leave=False,
        )

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

    try:
        with open_backend(args, protocol, rows, cols) as backend:
            info = backend.info()
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
    from hil.characterize.raw_traces import write_traces

    raw = [p.name for p in write_traces(out, traces, protocol.pulses)]
    extra = {
        "backend": {
            "kind": info.kind,
            "name": info.name,
            "preset": args.preset or protocol.preset,
            "seed": args.seed,
        },
        "experiment": {
            "devices": devices,
            "cycles": cycles,
            "pulses_per_phase": protocol.characterize.pulses_per_phase,
            "state": protocol.characterize.state,
            "read_averages": protocol.read.averages,
        },
        "figures": figures,
        "traces": raw,
    }
    _write_atomic(out / "characterization.json", to_json(result, protocol, extra))
    print(
        f"characterize: protocol {protocol.name!r} on {info.kind} backend {info.name!r}, "
        f"{devices} devices x {cycles} cycles x {protocol.characterize.pulses_per_phase} "
        f"pulses per phase"
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
        f"within range; wrote {out / 'characterization.json'}, {', '.join(figures)} and "
        f"the raw traces {', '.join(raw)}"
    )
    return 0 if result.passed else 1
