"""Preset files: a device described in YAML or JSON, usable wherever a preset name is.

`mrnn-hil devices fit` writes one from measured traces; `--preset mydevice.yaml` (train,
characterize, emulate, devices, run configs) reads it. The file is a `DeviceConfig` with a
format line on top:

    format: mrnn-hil device preset
    version: 1
    name: mydevice
    model: {kind: neurosim, g_min_s: ..., g_max_s: ..., states_ltp: ..., ...}
    set_pulse: {amplitude_v: 2.0, width_s: 1.0e-7}
    reset_pulse: {amplitude_v: -2.0, width_s: 1.0e-7}
    law: {kind: threshold, v_threshold_set_v: 1.5, v_threshold_reset_v: 1.5}
    c2c: {sigma: 0.02}
    ...

Every key of `DeviceConfig` may appear (docs/devices.md); unknown keys, wrong types and
inconsistent values are one-line errors naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from protocols.errors import InputError
from protocols.fitted_response import PRESET_FORMAT
from protocols.loading import load_document
from sim_backend.config import DeviceConfig

#: The version of the preset-file format this program reads and writes.
PRESET_VERSION = 1
_SUFFIXES = (".yaml", ".yml", ".json")


_MODEL_TAGS = ("neurosim", "soft_bounds", "vteam")


def _field(loc: tuple[Any, ...]) -> str:
    """Dotted field path, without the union tag pydantic inserts after `model`."""
    return ".".join(str(x) for x in loc if not (isinstance(x, str) and x in _MODEL_TAGS))


def _one_line(source: str, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = _field(tuple(first["loc"]))
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        text = f"unknown key '{path}'"
    elif first["type"] == "missing":
        text = f"field '{path}' is required but missing"
    elif not path:
        text = msg
    else:
        value = " ".join(repr(first.get("input"))[:60].split())
        text = f"field '{path}' = {value}: {msg}"
    more = len(errors) - 1
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return " ".join(f"{source}: {text}".split())


def parse_preset(data: Any, source: str) -> DeviceConfig:
    """Validate parsed data (a mapping with the format line) as a device preset."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise InputError(f"{source}: the file is {kind}; expected a mapping (a device preset)")
    if data.get("format") != PRESET_FORMAT:
        raise InputError(
            f"{source}: not a device preset file (expected 'format: {PRESET_FORMAT}' on top; "
            "`mrnn-hil devices fit` writes one)"
        )
    version = data.get("version", PRESET_VERSION)
    if version != PRESET_VERSION:
        raise InputError(
            f"{source}: field 'version' = {version!r}: this program reads preset version "
            f"{PRESET_VERSION}"
        )
    body = {k: v for k, v in data.items() if k not in ("format", "version")}
    body.setdefault("name", Path(source).stem)
    try:
        return DeviceConfig.model_validate(body)
    except ValidationError as exc:
        raise InputError(_one_line(source, exc)) from None


def load_preset_file(path: str | Path) -> DeviceConfig:
    """Read and validate a preset file (.yaml/.yml/.json); InputError in one line if bad.

    Read through the capped loader every user file goes through (size, nesting, aliases,
    duplicate keys)."""
    p = Path(path)
    source = str(p)
    if p.suffix.lower() not in _SUFFIXES:
        raise InputError(f"{source}: unknown extension {p.suffix!r}; use .yaml, .yml or .json")
    return parse_preset(load_document(p, source, _SUFFIXES), source)


def preset_document(cfg: DeviceConfig) -> dict[str, Any]:
    """The mapping a preset file holds for `cfg` (format line first, sources as a mapping)."""
    body = cfg.model_dump(mode="json")
    body["sources"] = dict(cfg.sources)
    return {"format": PRESET_FORMAT, "version": PRESET_VERSION, **body}


def dump_preset(cfg: DeviceConfig, suffix: str = ".yaml") -> str:
    """The text of a preset file for `cfg` (YAML, or JSON for suffix .json)."""
    doc = preset_document(cfg)
    if suffix.lower() == ".json":
        import json

        return json.dumps(doc, indent=2) + "\n"
    return yaml.safe_dump(doc, sort_keys=False, width=100)
