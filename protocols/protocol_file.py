"""Load a pulse-protocol file (YAML or JSON) into a `ProtocolFile`, or fail in one line.

The message names the file, the field path (``scheme.max_pulses``, ``pulses.set.width_s``),
the bad value and what is allowed, so a researcher can fix the file without a traceback.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from protocols.errors import InputError
from protocols.spec import (
    PROTOCOL_VERSION,
    AcceptanceSpec,
    CharacterizeSpec,
    LimitsSpec,
    ManhattanScheme,
    OuterProductScheme,
    ProportionalScheme,
    ProtocolFile,
    Pulse,
    PulsePair,
    Range,
    ReadSpec,
    Scheme,
    WriteVerifyScheme,
)

__all__ = [
    "PROTOCOL_VERSION",
    "AcceptanceSpec",
    "CharacterizeSpec",
    "LimitsSpec",
    "ManhattanScheme",
    "OuterProductScheme",
    "ProportionalScheme",
    "ProtocolFile",
    "Pulse",
    "PulsePair",
    "Range",
    "ReadSpec",
    "Scheme",
    "WriteVerifyScheme",
    "format_validation_error",
    "library_dir",
    "library_files",
    "load_protocol",
    "parse_mapping_text",
    "parse_protocol",
]

_SCHEME_KINDS: dict[str, type[BaseModel]] = {
    "manhattan": ManhattanScheme,
    "proportional": ProportionalScheme,
    "write_verify": WriteVerifyScheme,
    "outer_product": OuterProductScheme,
}


def library_dir() -> Path:
    """The directory of protocol files shipped with the package."""
    return Path(__file__).resolve().parent / "library"


def library_files() -> list[Path]:
    """Every shipped protocol file, sorted by name."""
    return sorted(library_dir().glob("*.yaml"))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _model_of(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation can hold (unwrapping Optional/Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            out.extend(_model_of(arg))
        return out
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """Walk `ProtocolFile` along a pydantic error location to the model holding the key."""
    model: type[BaseModel] = ProtocolFile
    k = 0
    while k < len(loc):
        name = loc[k]
        field = model.model_fields.get(str(name))
        if field is None:
            return None
        candidates = _model_of(field.annotation)
        k += 1
        if not candidates:
            return None
        if len(candidates) > 1 and k < len(loc) and loc[k] in _SCHEME_KINDS:
            model = _SCHEME_KINDS[str(loc[k])]
            k += 1
        else:
            model = candidates[0]
    return model


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for k, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif k > 0 and loc[k - 1] == "scheme" and item in _SCHEME_KINDS:
            continue  # the union tag pydantic inserts; the user wrote `kind: <tag>`
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line: source, field path, bad value, and what is allowed."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    kind = first["type"]
    msg = str(first["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    path = _path(loc)
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(model.model_fields) if model is not None else "see the documentation"
        text = f"unknown key '{path}' (allowed here: {allowed})"
    elif kind == "missing":
        text = f"field '{path}' is required but missing"
    elif not path:
        text = msg
    else:
        text = f"field '{path}' = {_short(first.get('input'))}: {msg}"
    more = len(errors) - 1
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return " ".join(f"{source}: {text}".split())


def parse_protocol(data: Any, source: str = "<protocol>") -> ProtocolFile:
    """Validate already-parsed data (a mapping) as a protocol file."""
    if data is None:
        raise InputError(
            f"{source}: the file is empty; expected a mapping with keys "
            f"{', '.join(ProtocolFile.model_fields)}"
        )
    if not isinstance(data, dict):
        raise InputError(
            f"{source}: the top level is a {type(data).__name__}; expected a mapping with keys "
            f"{', '.join(ProtocolFile.model_fields)}"
        )
    version = data.get("version")
    if version is not None and version != PROTOCOL_VERSION and isinstance(version, int):
        raise InputError(
            f"{source}: field 'version' = {version!r}: this program reads protocol version "
            f"{PROTOCOL_VERSION}"
        )
    try:
        return ProtocolFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(format_validation_error(source, exc)) from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(key)
        out[key] = value
    return out


def reject_duplicate_keys(text: str, source: str, suffix: str) -> None:
    """InputError if one mapping of a YAML or JSON text names a key twice.

    Both parsers keep the last value silently, so a limit written twice would take the
    value the reader did not notice. YAML is only composed (no object is constructed).
    """
    if suffix == ".json":
        try:
            json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError):
                return  # a syntax error: the parser's own message says where
            raise InputError(
                f"{source}: key {exc.args[0]!r} appears twice in one mapping"
            ) from None
        return
    try:
        stack = [yaml.compose(text, Loader=yaml.SafeLoader)]
    except yaml.YAMLError:
        return
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise InputError(
                            f"{source}: line {key.start_mark.line + 1}: key {key.value!r} "
                            "appears twice in one mapping"
                        )
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _parse_text(text: str, source: str, suffix: str) -> Any:
    reject_duplicate_keys(text, source, suffix)
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{source}: line {exc.lineno}, column {exc.colno}: JSON syntax error: {exc.msg}"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        text = f"{source}: {where}YAML syntax error: {problem}"
        raise InputError(" ".join(text.split())) from None


def parse_mapping_text(text: str, source: str, suffix: str) -> Any:
    """Parse a YAML (suffix .yaml/.yml) or JSON (.json) text as the protocol loader does:
    safe YAML, a key written twice refused, one-line InputError naming `source`."""
    return _parse_text(text, source, suffix.lower())


def load_protocol(path: str | Path) -> ProtocolFile:
    """Read and validate a protocol file (.yaml/.yml or .json); InputError in one line if bad."""
    p = Path(path)
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{source}: is a directory, not a protocol file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror}") from None
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise InputError(f"{source}: unknown extension {p.suffix!r}; use .yaml, .yml or .json")
    return parse_protocol(_parse_text(text, source, suffix), source)
