"""Regenerate the pulses, limits and acceptance ranges of protocols/library/*.yaml from the
simulator presets, by the rules below (the rest of each file is kept as written).

Usage: python -m sim_backend.protocol_library [--check] [NAME ...]
  (no option) rewrite the files;  --check: exit 1 if a file differs from what the rules give.

Rules, per protocol (named after its preset):
* pulses: the preset's nominal SET and RESET pulses (docs/devices.md gives their sources);
* limits: max_set_v / max_reset_v = 1.5 x the nominal amplitude, rounded up to 0.1 V (room for
  ISPP, far below the 20 V hard ceiling); max_half_select_v, where the file sets one, = the
  larger nominal |V| / 2 (V/2 bias) or / 3 (V/3); the other limits are kept;
* characterize.pulses_per_phase = 1.3 x the larger nominal state count, rounded up to 10;
* acceptance, centred on what a measurement should recover (`sim_backend.fit.measurable_
  response`: the nominal curve, or its resolvable part for curves that saturate long before
  their last pulse, or the simulator's NeuroSim fit of a non-NeuroSim model):
  G_min, G_max, on/off within 15 %; NL within max(0.4, 25 %); states_ltp within 25 %;
  C2C within 30 % (additive C2C; <= 0.001 for a noiseless preset); stuck fraction <= 5 %;
  d2d_sigma_g_max <= 2 x the preset's G_max spread where it has one; every other acceptance
  entry of the file (asymmetry, distinguishable states, ...) is kept as written (>= 5
  distinguishable states where the file has none).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import yaml

from protocols.protocol_file import library_dir, parse_protocol
from sim_backend.fit import measurable_response
from sim_backend.presets import PRESETS


def _up(value: float, step: float) -> float:
    return round(math.ceil(value / step - 1e-9) * step, 10)


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


def _range(centre: float, rel: float, floor: float = 0.0) -> dict[str, float]:
    half = max(floor, rel * abs(centre))
    return {"min": _sig(centre - half), "max": _sig(centre + half)}


def regenerate(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The protocol `doc` with pulses, limits and acceptance from preset `name`'s rules."""
    cfg = PRESETS[name]
    ref = measurable_response(cfg)
    out = dict(doc)
    set_p, reset_p = cfg.set_pulse, cfg.reset_pulse
    out["pulses"] = {
        "set": {"amplitude_v": set_p.amplitude_v, "width_s": set_p.width_s},
        "reset": {"amplitude_v": reset_p.amplitude_v, "width_s": reset_p.width_s},
    }
    limits = dict(doc["limits"])
    limits["max_set_v"] = _up(1.5 * set_p.amplitude_v, 0.1)
    limits["max_reset_v"] = _up(1.5 * abs(reset_p.amplitude_v), 0.1)
    if "max_half_select_v" in limits:
        bias = doc.get("scheme", {}).get("bias", "v2")
        fraction = 0.5 if bias == "v2" else 1.0 / 3.0
        limits["max_half_select_v"] = _sig(
            fraction * max(set_p.amplitude_v, abs(reset_p.amplitude_v))
        )
    out["limits"] = limits
    char = dict(doc["characterize"])
    nominal_states = max(ref.states_ltp, ref.states_ltd, mean_states(name))
    char["pulses_per_phase"] = int(_up(1.3 * nominal_states, 10))
    out["characterize"] = char
    acceptance: dict[str, Any] = dict(doc.get("acceptance") or {})  # others kept as written
    acceptance |= {
        "g_min_s": _range(cfg.g_min_s, 0.15),
        "g_max_s": _range(cfg.g_max_s, 0.15),
        "on_off": _range(cfg.g_max_s / cfg.g_min_s, 0.15),
        "nl_ltp": _range(ref.nl_ltp, 0.25, 0.4),
        "nl_ltd": _range(ref.nl_ltd, 0.25, 0.4),
        "states_ltp": _range(ref.states_ltp, 0.25),
    }
    if cfg.c2c.sigma == 0:
        acceptance["c2c_sigma"] = {"max": 0.001}
    elif cfg.c2c.form == "additive":
        acceptance["c2c_sigma"] = _range(cfg.c2c.sigma, 0.30)
    acceptance["stuck_fraction"] = {"max": 0.05}
    acceptance.setdefault("distinguishable_states", {"min": 5})
    if cfg.d2d.g_max_rel_sigma > 0:
        acceptance["d2d_sigma_g_max"] = {"max": _sig(2 * cfg.d2d.g_max_rel_sigma)}
    out["acceptance"] = acceptance
    return out


def mean_states(name: str) -> int:
    """The larger nominal state count of the preset's planner response."""
    from sim_backend.fit import mean_response

    resp = mean_response(PRESETS[name])
    return max(resp.states_ltp, resp.states_ltd)


def render(path: Path, doc: dict[str, Any]) -> str:
    """The file's leading comment block, then the document."""
    head = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        head.append(line)
    body = yaml.safe_dump(doc, sort_keys=False, width=100)
    return "\n".join(head) + "\n" + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=None, help="presets (default: all)")
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in library_dir().glob("*.yaml"))
    differ = []
    for name in names:
        path = library_dir() / f"{name}.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        text = render(path, regenerate(name, doc))
        parse_protocol(yaml.safe_load(text), str(path))  # the result must validate
        if text != path.read_text(encoding="utf-8"):
            differ.append(name)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    verb = "differ" if args.check else "rewritten"
    print(f"{len(differ)} of {len(names)} protocol files {verb}: {', '.join(differ) or '-'}")
    return 1 if (args.check and differ) else 0


if __name__ == "__main__":
    raise SystemExit(main())
