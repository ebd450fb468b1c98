"""Property: whatever the protocol file, run config and overrides, nothing that reaches a
device exceeds the effective limits, and those never exceed the protocol's unless the run
config's `allow_raise` names the field.

Hypothesis draws protocol files (limits, nominal pulses, read voltage, any scheme), run
configs (a partial `limits:` override with or without `allow_raise`, a scheme override, a
read-voltage option) and a backend: the simulator, the pulse-board emulator on a
pseudo-terminal, or a VISA or pulse-board dry-run stream. Each example is a real run of
`start_run` (the report's figures left out for speed). What reached the devices is read by
observers of its own (a recording array, the stream's frames) and compared with an oracle
written here: the protocol's limits with the override's fields laid on them.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from property_support import Reach, examples
from safety_support import (
    RecordingCrossbar,
    Seen,
    patterns_file,
    recording_array,
    serial_stream,
    visa_stream,
)

import sim_backend
from drivers.emu_board import BoardCore
from drivers.emu_serial import SerialEmulator
from hil.insitu import training_run
from hil.insitu.backends import device_model
from hil.insitu.run_config import validate_config
from protocols.errors import InputError
from protocols.limits import HARD_CEILINGS, HARD_MAX_READ_V, LIMIT_FIELDS

EXAMPLES = 48
RESOLUTIONS = 250
SWITCHING_V = 1.2  # the epiram preset's smaller switching threshold (both are 1.2 V)
BIASES = st.sampled_from(["none", "v2", "v3"])
DIVISOR = {"v2": 2.0, "v3": 3.0}


@st.composite
def schemes(draw: st.DrawFn, per_update: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["proportional", "manhattan", "write_verify", "outer_product"]))
    if kind == "proportional":
        return {"kind": kind, "bias": draw(BIASES), "max_pulses": draw(st.integers(1, 16))}
    if kind == "manhattan":
        return {"kind": kind, "bias": draw(BIASES)}
    if kind == "outer_product":
        return {
            "kind": kind,
            "bias": draw(st.sampled_from(["v2", "v3"])),
            "rank": draw(st.sampled_from([1, 2])),
            "max_pulses": draw(st.integers(1, min(per_update, 16))),
        }
    return {
        "kind": kind,
        "v_step_v": draw(st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.0])),
        "max_ispp_steps": draw(st.integers(0, 10)),
        "max_iterations": draw(st.integers(1, 4)),
        "max_pulses_per_iteration": draw(st.integers(1, 8)),
    }


@st.composite
def protocols(draw: st.DrawFn) -> dict[str, Any]:
    max_set, max_reset = draw(st.floats(1.0, 6.0)), draw(st.floats(1.0, 6.0))
    per_update = draw(st.integers(8, 64))
    set_v = draw(st.floats(0.5, 1.0)) * max_set
    reset_v = draw(st.floats(0.5, 1.0)) * max_reset
    width = draw(st.sampled_from([1e-8, 1e-7, 1e-6]))
    return {
        "version": 1,
        "name": "drawn",
        "pulses": {
            "set": {"amplitude_v": set_v, "width_s": width},
            "reset": {"amplitude_v": -reset_v, "width_s": width},
        },
        "read": {"voltage_v": draw(st.floats(0.02, 0.45))},
        "limits": {
            "max_set_v": max_set,
            "max_reset_v": max_reset,
            "max_width_s": draw(st.sampled_from([1e-6, 1e-4])),
            "compliance_a": draw(st.floats(2e-4, 1e-2)),
            "max_pulses_per_device_per_update": per_update,
            "max_pulses_per_device_per_run": draw(st.sampled_from([40, 10_000_000])),
            "max_energy_per_update_j": 1e-3,
            "max_half_select_v": draw(st.none() | st.floats(0.4, 3.0)),
        },
        "scheme": draw(schemes(per_update)),
    }


@st.composite
def overrides(draw: st.DrawFn, base: dict[str, Any], wild: bool) -> dict[str, Any] | None:
    """A partial `limits:` override; `wild`: now and then a value past the hard ceiling."""
    fields = draw(st.lists(st.sampled_from(LIMIT_FIELDS), unique=True, max_size=4))
    if not fields:
        return None
    out: dict[str, Any] = {}
    for name in fields:
        before = base[name]
        if wild and draw(st.integers(0, 7)) == 0:
            out[name] = HARD_CEILINGS[name] * (2 if isinstance(before, int) else 1.25)
        elif name == "max_half_select_v":
            out[name] = draw(st.none() | st.floats(0.3, 4.0))
        elif isinstance(before, int):
            out[name] = max(1, round(before * draw(st.sampled_from([0.25, 0.5, 1.0, 2.0]))))
        else:
            out[name] = before * draw(st.sampled_from([0.5, 0.8, 1.0, 1.3, 2.0, 5.0]))
    every = draw(st.booleans())  # half the time a careful user, opting into each raise
    out["allow_raise"] = fields if every else draw(st.lists(st.sampled_from(fields), unique=True))
    return out


@st.composite
def runs(draw: st.DrawFn, wild: bool = False) -> tuple[dict[str, Any], dict[str, Any], str]:
    proto = draw(protocols())
    config: dict[str, Any] = {}
    limits = draw(overrides(proto["limits"], wild))
    if limits is not None:
        config["limits"] = limits
    if draw(st.booleans()):
        config["scheme"] = draw(schemes(64))
    if draw(st.integers(0, 3)) == 0:
        config["read_v"] = draw(st.floats(0.01, 1.0))
    backend = draw(st.sampled_from(["sim", "sim", "serial-emulator", "serial-dry", "visa-dry"]))
    return proto, config, backend


@dataclass
class Oracle:
    """The limits the run must obey, computed here from the inputs alone."""

    limits: dict[str, Any]
    read_v: float
    unopted_raise: list[str]
    over_ceiling: list[str]

    @classmethod
    def of(cls, proto: dict[str, Any], config: dict[str, Any]) -> Oracle:
        base = proto["limits"]
        over = {k: v for k, v in config.get("limits", {}).items() if k != "allow_raise"}
        opted = set(config.get("limits", {}).get("allow_raise", []))
        limits = {**base, **over}

        def higher(new: float | None, old: float | None) -> bool:
            return (new is None and old is not None) or (
                new is not None and old is not None and new > old
            )

        unopted = [k for k, v in over.items() if higher(v, base[k]) and k not in opted]
        ceiling = [k for k, v in limits.items() if v is not None and v > HARD_CEILINGS[k]]
        read_v = config.get("read_v", proto["read"]["voltage_v"])
        return cls(limits, read_v, unopted, ceiling)

    def read_ceiling(self, proto: dict[str, Any]) -> float:
        p = proto["pulses"]
        return min(
            self.limits["max_set_v"],
            self.limits["max_reset_v"],
            p["set"]["amplitude_v"],
            -p["reset"]["amplitude_v"],
            SWITCHING_V,
        )


def observe(
    proto: dict[str, Any], config: dict[str, Any], backend: str, tmp: Path
) -> tuple[bool, Seen]:
    """Run one drawn example; (accepted before any pulse, what reached the devices)."""
    protocol = tmp / "protocol.json"  # JSON: parsed in microseconds, YAML in milliseconds
    protocol.write_text(json.dumps(proto))
    options: dict[str, Any] = {}
    if "read_v" in config:
        options["read_v"] = config["read_v"]
    data: dict[str, Any] = {
        "seed": 1,
        "protocol": str(protocol),
        "training": {"patterns": str(patterns_file(tmp)), "epochs": 1},
        "programming": {"max_iterations": 3},
        "evaluation": {"samples": 2, "curve_samples": 1, "p": [0.1]},
        "run": {"journal_sync": "normal"},
        **{k: v for k, v in config.items() if k != "read_v"},
    }
    stream = tmp / "stream.txt"
    if backend.endswith("-dry"):
        options["dry_run"] = str(stream)
        if backend == "visa-dry":
            options["min_width_s"] = 1e-9
    data["backend"] = {"kind": backend.split("-")[0], "options": options}
    RecordingCrossbar.seen = seen = Seen()
    emulator = None
    if backend == "serial-emulator":
        emulator = SerialEmulator(BoardCore(recording_array(8, 16, preset="epiram", seed=1)))
        emulator.start()
        data["backend"]["port"] = emulator.path
    accepted = True
    try:
        cfg = validate_config(data)
        training_run.start_run(cfg, tmp / "run")
    except InputError:
        accepted = (tmp / "run").exists()  # refused after the run began (a plan mid-run)
    finally:
        if emulator is not None:
            emulator.stop()
            # The board reads at its firmware's own voltage: its line protocol carries no
            # read voltage, so the emulated array's reads say nothing about the driver.
            seen.reads.clear()
    if backend == "serial-dry" and stream.exists():
        seen = serial_stream(stream.read_text())
    elif backend == "visa-dry" and stream.exists():
        seen = visa_stream(stream.read_text())
    return accepted, seen


@pytest.fixture
def quick_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator records what reaches it; a run ends without its report's figures."""
    monkeypatch.setattr(sim_backend, "SimulatedCrossbar", RecordingCrossbar)
    monkeypatch.setattr(
        training_run, "finish_run", lambda trainer, patterns, wall_s: {"status": "complete"}
    )


@pytest.mark.usefixtures("quick_runs")
def test_nothing_reaching_a_device_exceeds_the_effective_limits() -> None:
    reach = Reach("test_nothing_reaching_a_device_exceeds_the_effective_limits")

    @settings(
        max_examples=examples(EXAMPLES),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(runs())
    def check(example: tuple[dict[str, Any], dict[str, Any], str]) -> None:
        proto, config, backend = example
        oracle = Oracle.of(proto, config)
        with tempfile.TemporaryDirectory() as tmp:
            accepted, seen = observe(proto, config, backend, Path(tmp))
        reach.example()
        reach.hit("accepted" if accepted else "refused")
        if not accepted:
            assert seen.pulses == [] and seen.reads == [], "a refused run sent something"
            return
        # The effective limits never exceed the protocol's unless allow_raise names the
        # field, and never a hard ceiling.
        assert oracle.unopted_raise == [], f"raised without opt-in: {oracle.unopted_raise}"
        assert oracle.over_ceiling == [], f"over a hard ceiling: {oracle.over_ceiling}"
        lim = oracle.limits
        if seen.pulses:
            reach.hit("pulses reached a device")
        assert seen.top_set_v <= lim["max_set_v"] * (1 + 1e-12)
        assert seen.top_reset_v <= lim["max_reset_v"] * (1 + 1e-12)
        assert seen.top_width_s <= lim["max_width_s"] * (1 + 1e-12)
        if lim["max_half_select_v"] is not None:
            assert seen.half_select_v() <= lim["max_half_select_v"] * (1 + 1e-12)
        ceiling = min(oracle.read_ceiling(proto), HARD_MAX_READ_V)
        assert oracle.read_v <= proto["read"]["voltage_v"]
        for volts in seen.reads:
            assert volts == pytest.approx(oracle.read_v) and volts < ceiling
            assert math.isfinite(volts)

    check()
    # The property must not hold vacuously: enough examples ran into real pulses, and
    # enough were refused, for both sides to have been exercised.
    reach.require("pulses reached a device", 0.12)
    reach.require("refused", 0.2)


def test_the_effective_limits_never_exceed_the_protocols_unless_opted_in(tmp_path: Path) -> None:
    """The resolution every entry point calls (`device_model` of a run config), over many
    drawn protocol files and overrides: an accepted combination has exactly the oracle's
    limits, none above the protocol's unless `allow_raise` names it, none above a ceiling;
    a combination that raises unnamed or breaks a ceiling is refused."""
    reach = Reach("test_the_effective_limits_never_exceed_the_protocols_unless_opted_in")
    protocol = tmp_path / "protocol.json"
    patterns = patterns_file(tmp_path)

    @settings(max_examples=examples(RESOLUTIONS))
    @given(runs(wild=True))
    def check(example: tuple[dict[str, Any], dict[str, Any], str]) -> None:
        proto, config, _ = example
        oracle = Oracle.of(proto, config)
        protocol.write_text(json.dumps(proto))
        data: dict[str, Any] = {
            "protocol": str(protocol),
            "training": {"patterns": str(patterns)},
            **{k: v for k, v in config.items() if k != "read_v"},
        }
        if "read_v" in config:
            data["backend"] = {"options": {"read_v": config["read_v"]}}
        reach.example()
        try:
            model = device_model(validate_config(data))
        except InputError:
            if oracle.unopted_raise:
                reach.hit("refused an unopted raise")
            if oracle.over_ceiling:
                reach.hit("refused a value over a ceiling")
            return
        reach.hit("accepted")
        assert oracle.unopted_raise == [] and oracle.over_ceiling == []
        effective = model.limits.model_dump()
        assert effective == pytest.approx(oracle.limits)
        base = proto["limits"]
        opted = set(config.get("limits", {}).get("allow_raise", []))
        for name, value in effective.items():
            old = base[name]
            raised = (value is None and old is not None) or (
                value is not None and old is not None and value > old
            )
            assert not raised or name in opted, name
            if raised:
                reach.hit("accepted an opted raise")
            assert value is None or value <= HARD_CEILINGS[name]
        assert model.envelope.read_v == pytest.approx(oracle.read_v)
        assert model.envelope.read_v < min(oracle.read_ceiling(proto), HARD_MAX_READ_V + 1e-12)

    check()
    reach.require("accepted", 0.3)
    reach.require("accepted an opted raise", 0.02)
    reach.require("refused an unopted raise", 0.03)
    reach.require("refused a value over a ceiling", 0.03)
