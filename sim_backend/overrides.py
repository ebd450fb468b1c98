"""Keyword overrides of a device configuration, with errors that name the bad key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from protocols.errors import InputError


def _merge(base: dict[str, Any], key: str, value: Any, where: str) -> None:
    if key not in base:
        allowed = ", ".join(sorted(base))
        raise InputError(f"unknown device setting {where}{key!r}; allowed: {allowed}")
    current = base[key]
    if isinstance(current, dict) and isinstance(value, dict) and "kind" not in value:
        for sub_key, sub_value in value.items():
            _merge(current, sub_key, sub_value, f"{where}{key}.")
    elif isinstance(value, BaseModel):
        base[key] = value.model_dump()
    else:
        base[key] = value


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """Return `config` (a pydantic model) with `overrides` merged in and re-validated.

    A nested model takes a dict of its fields (`c2c={"sigma": 0.01}`) or the flat spelling
    `c2c__sigma=0.01`; a dict with a `kind` key replaces a union field (the device model).
    """
    if not overrides:
        return config
    data = config.model_dump()
    for key, value in overrides.items():
        parts = key.split("__")
        if len(parts) == 1:
            _merge(data, key, value, "")
        else:
            nested: Any = value
            for part in reversed(parts[1:]):
                nested = {part: nested}
            _merge(data, parts[0], nested, "")
    try:
        return type(config).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if not loc:
            raise InputError(f"device settings: {first['msg']}") from None
        raise InputError(
            f"device setting {loc}: {first['msg']} (got {first.get('input')!r})"
        ) from None
