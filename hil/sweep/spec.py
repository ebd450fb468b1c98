"""A sweep file: a base run config and the field paths to vary, expanded into checked cells.

```yaml
base: {training: {epochs: 20}}          # a run config as `train --config` takes (or a file)
grid:                                   # field path -> values: the cartesian product
  backend.preset: [epiram, taox_hfox]
  seed: [0, 1, 2]
cells:                                  # and/or a list of field path -> value maps
  - {scheme.kind: proportional}
  - {scheme.kind: write_verify, scheme.max_iterations: 3}
retries: 2                              # attempts after a failed one, per cell
```

With both `grid` and `cells`, every listed cell is crossed with every grid point. A field path
names a field of the run config (`mapping.w_max`, `scheme.max_iterations`,
`backend.options.c2c__sigma`, ...). Every path and every cell is checked before anything
runs: an unknown path, a bad value, an unknown preset or a device override the simulator
does not know is a one-line `InputError` naming the path. Relative file paths in the run
config (patterns, protocol, fitted response) are taken relative to the sweep file.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hil.insitu.run_config import RunConfig, read_config_file, validate_config
from hil.network.patterns import BUILTIN_PREFIX
from protocols.errors import InputError
from protocols.protocol_file import reject_duplicate_keys

#: Run-config fields that name files; relative ones are resolved against the sweep file.
FILE_FIELDS: tuple[str, ...] = ("training.patterns", "protocol", "response")
TOP_KEYS = ("base", "grid", "cells", "retries")


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: its name, the swept values, and its whole run config (data)."""

    index: int
    name: str
    values: dict[str, Any]
    config: dict[str, Any]

    def label(self) -> str:
        return ", ".join(f"{k}={render(v)}" for k, v in self.values.items()) or "(base)"


@dataclass(frozen=True)
class SweepSpec:
    """An expanded, checked sweep: the swept paths (CSV columns) and the cells in order."""

    source: str
    paths: tuple[str, ...]
    cells: tuple[Cell, ...]
    retries: int

    def digest(self) -> str:
        """Identity of the cells (their configs), to refuse resuming a different sweep."""
        data = [[c.name, c.config] for c in self.cells]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "paths": list(self.paths),
            "retries": self.retries,
            "digest": self.digest(),
            "cells": [
                {"index": c.index, "name": c.name, "values": c.values, "config": c.config}
                for c in self.cells
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepSpec:
        cells = tuple(
            Cell(int(c["index"]), str(c["name"]), dict(c["values"]), dict(c["config"]))
            for c in data["cells"]
        )
        return cls(str(data["source"]), tuple(data["paths"]), cells, int(data["retries"]))


def render(value: Any) -> str:
    """A value as it appears in tables and CSV: scalars plainly, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# -- field paths ------------------------------------------------------------------------------
def _models(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The model classes inside an annotation (through Optional, unions, Annotated), and
    whether a free-form mapping (dict) is among its types."""
    models: list[type[BaseModel]] = []
    is_dict = False
    stack = [annotation]
    while stack:
        a = stack.pop()
        origin = typing.get_origin(a)
        if origin is typing.Annotated:
            stack.append(typing.get_args(a)[0])
        elif origin is typing.Union or origin is types.UnionType:
            stack.extend(typing.get_args(a))
        elif origin is dict:
            is_dict = True
        elif isinstance(a, type) and issubclass(a, BaseModel):
            models.append(a)
    return models, is_dict


def check_path(path: str, source: str) -> None:
    """Refuse a field path that names no field of the run config."""
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise InputError(f"{source}: {path!r} is not a field path (use dots: mapping.w_max)")
    models: list[type[BaseModel]] = [RunConfig]
    is_dict = False
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the run config"
        if is_dict:
            if i != len(parts) - 1:
                raise InputError(
                    f"{source}: unknown run-config field path {path!r}: entries of {where} "
                    "are single keys (device overrides use __: c2c__sigma)"
                )
            return
        if not models:
            raise InputError(
                f"{source}: unknown run-config field path {path!r}: {where} is a value, not a "
                "section"
            )
        owners = [m for m in models if part in m.model_fields]
        if not owners:
            known = sorted({f for m in models for f in m.model_fields})
            raise InputError(
                f"{source}: unknown run-config field path {path!r}: {where} has no field "
                f"{part!r} (fields: {', '.join(known)})"
            )
        found: list[type[BaseModel]] = []
        is_dict = False
        for m in owners:
            sub, d = _models(m.model_fields[part].annotation)
            found += sub
            is_dict = is_dict or d
        models = found


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `path` in nested plain data, creating (or replacing a null) section on the way."""
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def get_path(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _overlap(paths: list[str], source: str) -> None:
    for a, b in itertools.permutations(paths, 2):
        if b.startswith(a + "."):
            raise InputError(f"{source}: field paths {a!r} and {b!r} overlap; sweep one of them")


# -- loading ----------------------------------------------------------------------------------
def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"sweep {path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"sweep {path}: YAML syntax error{where}") from None
    if not isinstance(data, dict):
        raise InputError(f"sweep {path}: a sweep file is a mapping with base:, grid: and/or cells:")
    reject_duplicate_keys(text, f"sweep {path}", path.suffix.lower() or ".yaml")
    return data


def _absolute_files(config: dict[str, Any], root: Path) -> None:
    for path in FILE_FIELDS:
        value = get_path(config, path)
        if (
            isinstance(value, str)
            and value
            and not value.startswith(BUILTIN_PREFIX)
            and not Path(value).is_absolute()
        ):
            set_path(config, path, str((root / value).resolve()))


def load_sweep(path: str | Path) -> SweepSpec:
    """Read, expand and check a sweep file; nothing runs and nothing is written."""
    p = Path(path)
    source = f"sweep {p}"
    data = _load_yaml(p)
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise InputError(
            f"{source}: unknown key {unknown[0]!r} (a sweep file has {', '.join(TOP_KEYS)})"
        )
    root = p.resolve().parent
    base_raw = data.get("base") or {}
    if isinstance(base_raw, str):
        base = read_config_file(root / base_raw)
    elif isinstance(base_raw, dict):
        base = base_raw
    else:
        raise InputError(f"{source}: base: a run config mapping or a run-config file name")
    grid = data.get("grid") or {}
    listed = data.get("cells")
    if not isinstance(grid, dict):
        raise InputError(f"{source}: grid: a mapping of field path -> list of values")
    if listed is not None and (
        not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed)
    ):
        raise InputError(f"{source}: cells: a list of mappings of field path -> value")
    if not grid and not listed:
        raise InputError(f"{source}: nothing to sweep; give grid: and/or cells:")
    retries = data.get("retries", 2)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
        raise InputError(f"{source}: retries: an integer from 0 to 100 (got {retries!r})")
    for key, values in grid.items():
        check_path(str(key), f"{source}: grid")
        if not isinstance(values, list) or not values:
            raise InputError(f"{source}: grid: {key}: a non-empty list of values")
    paths: list[str] = [str(k) for k in grid]
    for i, entry in enumerate(listed or []):
        for key in entry:
            check_path(str(key), f"{source}: cells[{i}]")
            if key in grid:
                raise InputError(f"{source}: cells[{i}]: {key} is also a grid path")
            if key not in paths:
                paths.append(str(key))
    combos = [dict(zip(grid, vals, strict=True)) for vals in itertools.product(*grid.values())]
    entries = [{str(k): v for k, v in e.items()} for e in (listed or [{}])]
    chosen = [{**e, **g} for e in entries for g in combos]
    width = max(3, len(str(len(chosen) - 1)))
    cells = []
    for index, values in enumerate(chosen):
        name = f"{index:0{width}d}"
        where = (
            f"{source}: cell {name} ({', '.join(f'{k}={render(v)}' for k, v in values.items())})"
        )
        _overlap(list(values), where)
        config = copy.deepcopy(base)
        for key, value in values.items():
            set_path(config, key, value)
        _absolute_files(config, root)
        check_cell(config, where)
        ordered = {k: values[k] for k in paths if k in values}
        cells.append(Cell(index, name, ordered, json.loads(json.dumps(config))))
    return SweepSpec(str(p), tuple(paths), tuple(cells), retries)


def check_cell(config: dict[str, Any], where: str) -> RunConfig:
    """Everything `train` would refuse, refused now: config, patterns, preset, limits, overrides."""
    from hil.insitu.training_run import resolve

    cfg = validate_config(config, where)
    if cfg.backend.kind != "sim":
        raise InputError(
            f"{where}: backend.kind: a sweep runs on the simulator (got {cfg.backend.kind!r})"
        )
    try:
        resolve(cfg)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if cfg.backend.options:
        from hil.insitu.backends import READ_OPTION
        from sim_backend import get_preset

        preset = get_preset(cfg.backend.preset)
        for key, value in cfg.backend.options.items():
            if key == READ_OPTION:  # the read voltage: part of the envelope, checked by resolve
                continue
            try:
                preset.with_overrides(**{key: value})
            except (InputError, ValidationError, TypeError, ValueError, KeyError) as exc:
                raise InputError(f"{where}: backend.options.{key}: {exc}") from None
    return cfg
