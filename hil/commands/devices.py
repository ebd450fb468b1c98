"""`mrnn-hil devices`: the simulator's device presets, and presets fitted to measured traces.

    mrnn-hil devices                      one row per preset, then where each preset's pulses
                                          and thresholds come from
    mrnn-hil devices NAME|FILE            every parameter of a preset (or a preset file) and
                                          the source of each number
    mrnn-hil devices fit TRACES.csv --out mydevice.yaml
                                          fit a preset to measured SET/RESET trains; writes
                                          mydevice.yaml and the plot mydevice.png next to it;
                                          the last line printed is one JSON object

`--json` prints the list or the detail as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from protocols.errors import InputError
from protocols.loading import short


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "devices",
        help="list the simulated device presets; fit a preset to measured traces",
        description="List the simulator's device presets (models, NL, states, windows, "
        "variability, nominal pulses and thresholds, and the source of each number); "
        "`devices NAME` (or a preset file) shows one in full; `devices fit TRACES.csv --out "
        "FILE.yaml` fits a preset to measured pulse trains.",
    )
    p.add_argument(
        "target",
        nargs="*",
        metavar="NAME | fit TRACES.csv",
        help="a preset name or preset file to show in full; or `fit` and a traces CSV",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--plot",
        metavar="PRESET",
        help="draw the preset's pulse response (SET then RESET trains) to PRESET-response.png",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="with --plot: the PNG to write; with fit: the preset file to write",
    )
    p.add_argument("--name", help="fit: the preset's name (default: the --out file's stem)")
    p.add_argument(
        "--threshold-set", type=float, metavar="V", help="fit: SET threshold (default 0.75 V_set)"
    )
    p.add_argument(
        "--threshold-reset",
        type=float,
        metavar="V",
        help="fit: RESET threshold magnitude (default 0.75 |V_reset|)",
    )
    p.add_argument(
        "--state",
        choices=("conductance", "resistance"),
        default="conductance",
        help="fit: the coordinate the steps are even in (as a protocol's characterize.state)",
    )


# --- the list and one preset -----------------------------------------------------------------


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
        "c2c_form": preset.c2c.form,
        "d2d": preset.d2d.model_dump(),
        "set_pulse": preset.set_pulse.model_dump(),
        "reset_pulse": preset.reset_pulse.model_dump(),
        "threshold_set_v": preset.threshold_set_v,
        "threshold_reset_v": preset.threshold_reset_v,
        "description": preset.description,
        "source": preset.source,
        "sources": dict(preset.sources),
        "uncertain": list(preset.uncertain),
    }


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, "")):
        if abs(value) < factor * 999.5:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _pulse(p: dict[str, float]) -> str:
    return f"{p['amplitude_v']:+g} V {_si(p['width_s'], 's')}"


def _columns(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return [line.rstrip() for line in lines]


def _table(rows: list[dict[str, Any]]) -> str:
    head = [
        "preset",
        "model",
        "G window",
        "on/off",
        "states",
        "NL LTP/LTD",
        "C2C",
        "SET",
        "RESET",
        "V_th SET/RESET",
    ]
    body = []
    for r in rows:
        fitted = "~" if r["response_fitted"] else ""
        c2c = f"{100 * r['c2c_sigma']:.3g} %"
        if r["c2c_form"] == "multiplicative":
            c2c += " of step"
        body.append(
            [
                r["name"],
                r["model"],
                f"{_si(r['g_min_s'], 'S')} - {_si(r['g_max_s'], 'S')}",
                f"{r['on_off']:.3g}",
                f"{fitted}{r['states_ltp']}/{r['states_ltd']}",
                f"{fitted}{r['nl_ltp']:.3g}/{r['nl_ltd']:.3g}",
                c2c,
                _pulse(r["set_pulse"]),
                _pulse(r["reset_pulse"]),
                f"{r['threshold_set_v']:g}/{r['threshold_reset_v']:g} V",
            ]
        )
    lines = _columns(head, body)
    lines.append("~ : NeuroSim response fitted to a non-NeuroSim model (approximate)")
    lines.append("")
    lines.append(
        "Where the pulses and thresholds come from (`mrnn-hil devices NAME`: every number):"
    )
    for r in rows:
        src = r["sources"]
        lines.append(f"  {r['name']}")
        lines.append(f"    SET         {src.get('set_pulse', '(not stated)')}")
        lines.append(f"    RESET       {src.get('reset_pulse', '(not stated)')}")
        thresholds = f"{r['threshold_set_v']:g} / {r['threshold_reset_v']:g} V"
        lines.append(f"    thresholds  {thresholds}: {src.get('thresholds', '(not stated)')}")
    return "\n".join(lines)


def _detail(name: str) -> dict[str, Any]:
    from sim_backend import get_preset, mean_response

    preset = get_preset(name)
    config = preset.model_dump(mode="json")
    config["sources"] = dict(preset.sources)
    return {
        "config": config,
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


# --- fit ---------------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fit(args: argparse.Namespace, traces_path: str) -> int:
    from hil.characterize.device_fit import fit_device, plot_fit
    from hil.characterize.raw_traces import read_traces_csv
    from sim_backend.preset_file import dump_preset

    out: Path | None = args.out
    if out is None:
        raise InputError("devices fit needs --out FILE.yaml (the preset file to write)")
    if out.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise InputError(f"--out {out}: use a .yaml, .yml or .json preset file name")
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out}: is a directory")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: the directory {out.parent} does not exist")
    data = read_traces_csv(traces_path)
    fit = fit_device(
        data,
        name=args.name or out.stem,
        origin=Path(traces_path).name,
        threshold_set_v=args.threshold_set,
        threshold_reset_v=args.threshold_reset,
        state=args.state,
    )
    _write_atomic(out, dump_preset(fit.config, out.suffix))
    plot = plot_fit(data, fit, out.with_suffix(".png"))
    s = fit.summary
    print(
        f"devices fit: {s['reads']} reads of {s['devices']} devices x {s['cycles']} cycles "
        f"from {traces_path}"
    )
    lines = [
        (
            "G window",
            f"{_si(s['g_min_s'], 'S')} - {_si(s['g_max_s'], 'S')} (on/off {s['on_off']:.3g})",
        ),
        ("states LTP/LTD", f"{s['states_ltp']} / {s['states_ltd']}"),
        ("NL LTP/LTD", f"{s['nl_ltp']:.3f} / {s['nl_ltd']:.3f}"),
        ("C2C", f"{100 * s['c2c']:.3g} % of the window per pulse"),
        (
            "read noise",
            "not measured (no repeated reads)"
            if s["read_noise"] is None
            else f"{100 * s['read_noise']:.3g} % of G",
        ),
        (
            "D2D",
            f"NL sigma {s['d2d_sigma_nl']:.3g} (upper bound), G_min {s['d2d_sigma_g_min']}, "
            f"G_max {s['d2d_sigma_g_max']}",
        ),
        ("pulses", f"SET {_pulse(s['set_pulse'])}, RESET {_pulse(s['reset_pulse'])}"),
    ]
    for key, value in lines:
        print(f"  {key.ljust(15)} {value}")
    if s["stuck_devices"]:
        print(f"  stuck devices (left out): {', '.join(s['stuck_devices'])}")
    print(f"wrote {out} and {plot.name}; use it as --preset {out} (or --response {out})")
    print(json.dumps({"preset": str(out), "plot": str(plot), **s}))
    return 0


def run(args: argparse.Namespace) -> int:
    from sim_backend import PRESETS
    from sim_backend.presets import is_preset_file

    target: list[str] = args.target
    if target and target[0] == "fit":
        if len(target) != 2:
            raise InputError("usage: mrnn-hil devices fit TRACES.csv --out FILE.yaml")
        return _fit(args, target[1])
    if len(target) > 1:
        raise InputError(f"one preset at a time, got {len(target)}: {short(' '.join(target))}")
    for name in (*target, args.plot):
        if name is not None and name not in PRESETS and not is_preset_file(name):
            raise InputError(
                f"unknown device preset {short(name)}; known presets: {', '.join(PRESETS)} "
                "(or a preset file path)"
            )
    if args.plot is not None:
        from hil.characterize.preset_response import plot_preset_response

        stem = Path(args.plot).stem if is_preset_file(args.plot) else args.plot
        path = plot_preset_response(args.plot, Path(args.out or f"{stem}-response.png"))
        print(f"written: {path}")
        return 0
    if args.out is not None:
        raise InputError(
            "--out is for `devices fit TRACES.csv --out FILE.yaml` or `devices --plot PRESET`"
        )
    if not target:
        rows = [_summary(name) for name in PRESETS]
        print(json.dumps(rows, indent=2) if args.json else _table(rows))
        return 0
    detail = _detail(target[0])
    if args.json:
        print(json.dumps(detail, indent=2))
        return 0
    pairs = _flatten(detail)
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        print(f"{key.ljust(width)}  {value}")
    return 0
