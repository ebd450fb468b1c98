"""`mrnn-hil devices [NAME]`: the simulator's device presets and their parameters.

Without a name: one table row per preset. With a name: every parameter of that preset, its
source and the values not checked against the original paper. `--json` prints the same as JSON
(the full configuration and the mean NeuroSim response a planner should assume).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from protocols.errors import InputError
from protocols.loading import short


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "devices",
        help="list the simulated device presets and their parameters",
        description="List the simulator's device presets (models, NL, states, windows, "
        "variability, nominal pulses, sources).",
    )
    p.add_argument("name", nargs="?", help="show every parameter of one preset")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--plot",
        metavar="PRESET",
        help="draw the preset's pulse response (SET then RESET trains) to PRESET-response.png",
    )
    p.add_argument("--out", metavar="FILE", help="with --plot: the PNG to write")


def _summary(name: str) -> dict[str, Any]:
    from sim_backend import get_preset, mean_response

    preset = get_preset(name)
    resp = mean_response(preset)
    return {
        "name": name,
        "model": preset.model.kind,
        "g_min_s": preset.g_min_s,
        "g_max_s": preset.g_max_s,
        "on_off": preset.g_max_s / preset.g_min_s,
        "states_ltp": resp.states_ltp,
        "states_ltd": resp.states_ltd,
        "nl_ltp": resp.nl_ltp,
        "nl_ltd": resp.nl_ltd,
        "response_fitted": preset.model.kind != "neurosim",
        "c2c_sigma": preset.c2c.sigma,
        "d2d": preset.d2d.model_dump(),
        "set_pulse": preset.set_pulse.model_dump(),
        "reset_pulse": preset.reset_pulse.model_dump(),
        "threshold_set_v": preset.threshold_set_v,
        "threshold_reset_v": preset.threshold_reset_v,
        "description": preset.description,
        "source": preset.source,
        "uncertain": list(preset.uncertain),
    }


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, "")):
        if abs(value) < factor * 999.5:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _table(rows: list[dict[str, Any]]) -> str:
    head = ["preset", "model", "G window", "on/off", "states", "NL LTP/LTD", "C2C", "SET", "RESET"]
    body = []
    for r in rows:
        fitted = "~" if r["response_fitted"] else ""
        body.append(
            [
                r["name"],
                r["model"],
                f"{_si(r['g_min_s'], 'S')} - {_si(r['g_max_s'], 'S')}",
                f"{r['on_off']:.3g}",
                f"{fitted}{r['states_ltp']}/{r['states_ltd']}",
                f"{fitted}{r['nl_ltp']:.3g}/{r['nl_ltd']:.3g}",
                f"{100 * r['c2c_sigma']:.3g} %",
                f"{r['set_pulse']['amplitude_v']:g} V {_si(r['set_pulse']['width_s'], 's')}",
                f"{r['reset_pulse']['amplitude_v']:g} V {_si(r['reset_pulse']['width_s'], 's')}",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    lines = [line.rstrip() for line in lines]
    lines.append("~ : NeuroSim response fitted to a non-NeuroSim model (approximate)")
    return "\n".join(lines)


def _detail(name: str) -> dict[str, Any]:
    from sim_backend import get_preset, mean_response

    preset = get_preset(name)
    return {
        "config": preset.model_dump(mode="json"),
        "threshold_set_v": preset.threshold_set_v,
        "threshold_reset_v": preset.threshold_reset_v,
        "response": mean_response(preset).model_dump(mode="json"),
    }


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        out: list[tuple[str, str]] = []
        for key, value in data.items():
            out += _flatten(value, f"{prefix}{key}.")
        return out
    if isinstance(data, list):
        return [(prefix[:-1], "; ".join(str(v) for v in data) or "-")]
    return [(prefix[:-1], str(data))]


def run(args: argparse.Namespace) -> int:
    from sim_backend import PRESETS

    for name in (args.name, args.plot):
        if name is not None and name not in PRESETS:
            raise InputError(
                f"unknown device preset {short(name)}; known presets: {', '.join(PRESETS)}"
            )
    if args.plot is not None:
        from pathlib import Path

        from hil.characterize.preset_response import plot_preset_response

        path = plot_preset_response(args.plot, Path(args.out or f"{args.plot}-response.png"))
        print(f"written: {path}")
        return 0
    if args.name is None:
        rows = [_summary(name) for name in PRESETS]
        print(json.dumps(rows, indent=2) if args.json else _table(rows))
        return 0
    detail = _detail(args.name)
    if args.json:
        print(json.dumps(detail, indent=2))
        return 0
    pairs = _flatten(detail)
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        print(f"{key.ljust(width)}  {value}")
    return 0
