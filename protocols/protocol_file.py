"""Load a pulse-protocol file (YAML or JSON) into a `ProtocolFile`, or fail in one line.

The message names the file, the field path (``scheme.max_pulses``, ``pulses.set.width_s``),
the bad value and what is allowed, so a researcher can fix the file without a traceback.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from protocols.errors import InputError
from protocols.loading import parse_document, read_text, short
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
    "load_protocol_text",
    "parse_protocol",
    "parse_protocol_text",
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
        text = f"field '{path}' = {short(first.get('input'))}: {msg}"
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


def reject_duplicate_keys(text: str, source: str, suffix: str) -> None:
    """InputError if one mapping of a YAML or JSON text names a key twice, or the text
    breaks a loading cap (nesting, YAML aliases); syntax errors are left to the caller's
    own parse. For callers that parse the text themselves; files go through `load_protocol`.
    """
    try:
        parse_document(text, source, suffix)
    except InputError as exc:
        if "syntax error" not in str(exc):
            raise


def load_protocol(path: str | Path) -> ProtocolFile:
    """Read and validate a protocol file (.yaml/.yml or .json); InputError in one line if bad."""
    return load_protocol_text(path)[0]


def load_protocol_text(path: str | Path) -> tuple[ProtocolFile, str]:
    """The protocol and the exact text it was parsed from (read once, so a run can digest
    the very content whose limits it uses).

    The file goes through `protocols.loading`: regular files only, size, nesting and YAML
    alias-expansion caps, duplicate keys refused.
    """
    source = str(path)
    text = read_text(path, source)
    suffix = Path(path).suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise InputError(
            f"{source}: unknown extension {short(Path(path).suffix)}; use .yaml, .yml or .json"
        )
    return parse_protocol_text(text, source, suffix), text


def parse_protocol_text(text: str, source: str, suffix: str = ".yaml") -> ProtocolFile:
    """Validate the text of a protocol file (`suffix` says YAML or JSON), with the caps."""
    return parse_protocol(parse_document(text, source, suffix), source)
