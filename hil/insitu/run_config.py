"""The whole configuration of an in-situ training run, as one strict model.

Loaded from YAML (safe_load) or TOML; unknown keys and wrong types are refused with a message
naming the file, the field path, the bad value and what is allowed. The resolved config is
written to the run directory, so a resumed run uses exactly what the first run used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hil.network.learning import RuleConfig
from protocols.errors import InputError
from protocols.limits import LimitsOverride
from protocols.loading import parse_document, read_text
from protocols.response import NeuroSimResponse
from protocols.spec import Scheme

SchemeName = Literal["proportional", "manhattan", "write_verify", "outer_product"]
SCHEME_NAMES: tuple[str, ...] = ("proportional", "manhattan", "write_verify", "outer_product")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TrainingConfig(_Strict):
    """What is learnt and for how long."""

    patterns: str | None = Field(
        default=None,
        description="pattern file, or builtin:<name> (letters16, glyphs32); None = built-in 16",
    )
    epochs: int = Field(default=100, ge=1, le=100_000)
    order: Literal["fixed", "shuffled"] = "fixed"
    mode: Literal["paper", "denoising"] = Field(
        default="denoising",
        description="paper: input = target = clean; denoising: input corrupted with p_train",
    )
    p_train: float = Field(default=0.1, ge=0.0, le=0.5)
    copies: int = Field(default=1, ge=1, le=1024, description="corrupted copies, averaged")
    w0_range: float = Field(default=0.1, ge=0.0, description="W0 ~ symmetric U[-r, r]")


class BackendConfig(_Strict):
    """Which array the run trains on."""

    kind: Literal["sim", "visa", "serial", "arc1", "arc2"] = "sim"
    preset: str = Field(
        default="epiram",
        description="simulator preset (sim and emulators); default: the protocol file's `preset:`, "
        "else epiram",
    )
    resource: str | None = Field(default=None, description="VISA resource string")
    port: str | None = Field(default=None, description="serial port or URL")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="sim: device overrides such as faults__stuck_min_rate; instruments: "
        "driver options",
    )


class MappingConfig(_Strict):
    """Differential pairs: per ordered pair on an N x 2N array (blocks, interleaved), or per
    unordered pair on an N x (N - 1) array (symmetric; N x (N + 1) with the diagonal)."""

    w_max: float = Field(default=0.5, gt=0.0, description="|W| that spans one device's range")
    layout: Literal["blocks", "interleaved", "symmetric"] = "blocks"
    diagonal: bool = Field(
        default=True,
        description="store and learn W_ii (symmetric layout; the other layouts always do)",
    )
    tie_symmetric: bool = Field(
        default=True,
        description="relax on (W + W^T)/2: W_ij and W_ji act as one tied weight, as the "
        "paper's symmetric network assumes (only with a symmetric rule)",
    )


class ProgrammingConfig(_Strict):
    """Initial programming of W0."""

    method: Literal["write_verify", "none"] = "write_verify"
    tolerance: float = Field(default=0.02, gt=0.0, lt=1.0, description="fraction of range")
    max_iterations: int = Field(default=30, ge=1, le=10_000)


class LoopConfig(_Strict):
    """What the loop does each presentation."""

    read_every: int = Field(default=1, ge=1, description="full read every k presentations")
    analog_mvm: bool = Field(default=False, description="measure W through the analog product")
    verify: bool = Field(default=False, description="read back after every plan")
    on_bad_update: Literal["continue", "stop"] = "continue"
    max_refused: int | None = Field(default=None, ge=1, description="stop after this many")
    max_limit_refused_share: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="a run in which a larger share of its presentations had their update "
        "refused by a safety limit ends as 'refused' (exit code 4), not 'complete'",
    )


class StuckConfig(_Strict):
    detect: bool = True
    min_expected: float = Field(default=0.05, gt=0.0)
    ratio: float = Field(default=0.1, gt=0.0, lt=1.0)
    strikes: int = Field(default=3, ge=1)


class EvaluationConfig(_Strict):
    p: list[float] = Field(default_factory=lambda: [0.1, 0.2], min_length=1)
    samples: int = Field(default=100, ge=1, description="corrupted samples per pattern and p")
    every_epochs: int = Field(default=5, ge=1, description="accuracy curve spacing")
    curve_samples: int = Field(default=10, ge=1)

    @field_validator("p")
    @classmethod
    def _p_range(cls, value: list[float]) -> list[float]:
        for p in value:
            if not 0.0 <= p <= 0.5:
                raise ValueError(f"every p must be in [0, 0.5], got {p}")
        return value


class RunSection(_Strict):
    checkpoint_every: int = Field(
        default=64, ge=1, description="presentations between checkpoints (snapshot backends)"
    )
    journal_sync: Literal["auto", "full", "normal"] = Field(
        default="auto",
        description="full: fsync every plan intent before it is sent; normal: survive a killed "
        "process, not a power cut; auto: full on instruments, normal on the simulator (whose "
        "state lives in memory and is restored from checkpoints anyway)",
    )
    figures: bool = Field(
        default=True,
        description="draw the report's PNG figures; false writes report.json and report.md "
        "only (a sweep of many cells, or a test, need not spend seconds per run on plots)",
    )


class RunConfig(_Strict):
    """Everything a run needs; the run directory keeps the resolved copy."""

    seed: int = Field(default=0, ge=0)
    training: TrainingConfig = TrainingConfig()
    rule: RuleConfig = RuleConfig()
    backend: BackendConfig = BackendConfig()
    mapping: MappingConfig = MappingConfig()
    programming: ProgrammingConfig = ProgrammingConfig()
    protocol: str | None = Field(
        default=None, description="protocol file: pulses, read, limits and scheme"
    )
    scheme: Scheme | None = Field(
        default=None, description="overrides the protocol's scheme; default proportional"
    )
    loop: LoopConfig = LoopConfig()
    stuck: StuckConfig = StuckConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    limits: LimitsOverride | None = Field(
        default=None,
        description="laid field by field on the protocol file's limits (else the built-in "
        "ones): a field may be tightened; raising one needs `allow_raise: [field]`, is "
        "logged, and stays under the hard ceilings",
    )
    response: NeuroSimResponse | str | None = Field(
        default=None,
        description="planning model: a characterization.json (or its directory) written by "
        "`mrnn-hil characterize`, or the model itself; None = the preset's mean response. "
        "The resolved config embeds the model, so a resumed run plans with the same one.",
    )
    run: RunSection = RunSection()

    @model_validator(mode="after")
    def _mapping_options(self) -> RunConfig:
        if not self.mapping.diagonal and self.mapping.layout != "symmetric":
            raise ValueError(
                f"mapping.diagonal: false needs mapping.layout: symmetric (the "
                f"{self.mapping.layout} layout always stores the diagonal)"
            )
        if self.mapping.layout == "symmetric" and self.loop.analog_mvm:
            raise ValueError(
                "loop.analog_mvm probes one column pair per unit; mapping.layout: symmetric "
                "has no such columns: use one or the other"
            )
        return self

    @model_validator(mode="after")
    def _w0_fits(self) -> RunConfig:
        if self.training.w0_range > self.mapping.w_max:
            raise ValueError(
                f"training.w0_range = {self.training.w0_range:g} exceeds mapping.w_max = "
                f"{self.mapping.w_max:g}: W0 ~ U[-r, r] must fit the devices' window"
            )
        return self


def _describe(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        if not err["loc"]:  # a check across fields: its message names them and the values
            parts.append(str(err["msg"]).removeprefix("Value error, "))
            continue
        parts.append(f"{loc}: {err['msg']} (got {shown})")
    more = f" (+{len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
    return f"{source}: " + "; ".join(parts) + more


def validate_config(data: Any, source: str = "config") -> RunConfig:
    """A `RunConfig` from plain data, or an `InputError` naming the bad field."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: the run config must be a mapping, got {type(data).__name__}")
    try:
        # JSON round trip: strict models take plain data, tuples become lists.
        cfg = RunConfig.model_validate(json.loads(json.dumps(data)))
    except ValidationError as exc:
        raise InputError(_describe(exc, source)) from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: {exc}") from None
    return with_protocol_preset(cfg)


def with_protocol_preset(cfg: RunConfig) -> RunConfig:
    """The protocol file's `preset:` where the config names none: a protocol is written for
    one device, and simulating another under its pulses and limits is a silent mismatch."""
    if cfg.protocol is None or "preset" in cfg.backend.model_fields_set:
        return cfg
    from protocols.protocol_file import load_protocol

    preset = load_protocol(cfg.protocol).preset
    if preset is None:
        return cfg
    return cfg.model_copy(update={"backend": cfg.backend.model_copy(update={"preset": preset})})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Plain data from a YAML, JSON or TOML file (by extension), with one-line errors.

    Read through `protocols.loading`: regular files only, size, nesting and YAML
    alias-expansion caps, a key written twice refused.
    """
    p = Path(path)
    source = f"config {p}"
    text = read_text(p, source)
    if not text.strip():
        raise InputError(f"{source}: the file is empty")
    data = parse_document(text, source, p.suffix)
    if not isinstance(data, dict):
        raise InputError(f"{source}: the run config must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> RunConfig:
    return validate_config(read_config_file(path), f"config {path}")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of plain config data (override wins)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
