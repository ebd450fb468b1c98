"""`mrnn-hil validate FILE...`: load and check pulse-protocol files.

A good file prints a one-line summary; a bad one ends in a one-line error naming the file,
the field, the bad value and what is allowed (exit code 2, no traceback).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import numpy as np

from protocols.errors import InputError
from protocols.limits import LimitViolation, check_plan, check_read_voltage
from protocols.plan import PulseGroup, PulsePlan
from protocols.protocol_file import load_protocol
from protocols.spec import ProtocolFile

if TYPE_CHECKING:
    from sim_backend.config import DeviceConfig


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check pulse-protocol files (YAML or JSON)",
        description="Load and check pulse-protocol files: types, ranges, unknown keys, pulses "
        "against the file's own safety limits (compliance and energy at the highest "
        "conductance the file expects). Exit code 0 if all are valid, 2 otherwise.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="protocol file(s)")


def summary(protocol: ProtocolFile) -> str:
    """One line describing a valid protocol."""
    set_p, reset_p = protocol.pulses.set, protocol.pulses.reset
    judged = len(protocol.acceptance.judged())
    return (
        f"protocol {protocol.name!r} (version {protocol.version}): "
        f"SET {set_p.amplitude_v:+g} V / {set_p.width_s:g} s, "
        f"RESET {reset_p.amplitude_v:+g} V / {reset_p.width_s:g} s; "
        f"scheme {protocol.scheme.kind}; limits |V| <= {protocol.limits.max_set_v:g}/"
        f"{protocol.limits.max_reset_v:g} V, <= {protocol.limits.max_pulses_per_device_per_update}"
        f" pulses/device/update; {judged} acceptance range{'s' if judged != 1 else ''}"
    )


def highest_conductance(
    protocol: ProtocolFile, device: DeviceConfig | None
) -> tuple[float, str] | None:
    """The highest conductance the file expects its devices to reach, and where it says so
    (`device`: the preset the file names, from `named_device`)."""
    found: list[tuple[float, str]] = []
    accepted = protocol.acceptance.g_max_s
    if accepted is not None and accepted.max is not None:
        found.append((accepted.max, "acceptance.g_max_s.max"))
    if device is not None:
        found.append((device.g_max_s, f"preset {protocol.preset!r} G_max"))
    return max(found) if found else None


def named_device(protocol: ProtocolFile) -> DeviceConfig | None:
    """The simulator preset the file names (built-in or a preset file), if it names one."""
    from sim_backend.presets import PRESETS, get_preset, is_preset_file

    if protocol.preset is None:
        return None
    if protocol.preset in PRESETS or is_preset_file(protocol.preset):
        return get_preset(protocol.preset)  # a bad preset file: one-line error
    return None


def check_nominal_pulses(protocol: ProtocolFile, source: str, device: DeviceConfig | None) -> None:
    """One nominal SET and one RESET pulse at the highest expected conductance, vs the limits.

    A file whose own pulses would break its compliance or energy limit on a device that meets
    its spec is not a valid protocol: it would be refused at the first plan of every run.
    """
    top = highest_conductance(protocol, device)
    if top is None:
        return
    g, where = top
    for kind, pulse in (("SET", protocol.pulses.set), ("RESET", protocol.pulses.reset)):
        plan = PulsePlan(1, 1, (PulseGroup(pulse.shape(), np.ones((1, 1), dtype=np.int64)),))
        try:
            check_plan(plan, protocol.limits, conductance_s=np.full((1, 1), g))
        except LimitViolation as exc:
            raise InputError(
                f"{source}: the nominal {kind} pulse at {where} = {g:.3g} S breaks the "
                f"limits: {exc}"
            ) from None


def check_read_against_preset(
    protocol: ProtocolFile, source: str, device: DeviceConfig | None
) -> None:
    """The read voltage against the switching threshold of the preset the file names.

    `train` and `characterize` refuse such a read through the envelope; a file that every run
    would refuse is not a valid protocol either.
    """
    from sim_backend.crossbar import switching_threshold

    if device is None:
        return
    switching = switching_threshold(device)
    try:
        check_read_voltage(
            protocol.read.voltage_v,
            protocol.limits.safety_limits(),
            switching_v=switching,
            source="read.voltage_v",
        )
    except LimitViolation as exc:
        raise InputError(f"{source}: {exc} (of preset {protocol.preset!r})") from None


def run(args: argparse.Namespace) -> int:
    for path in args.files:
        protocol = load_protocol(path)
        device = named_device(protocol)  # loaded once: a preset file is read once
        check_nominal_pulses(protocol, str(path), device)
        check_read_against_preset(protocol, str(path), device)
        print(f"{path}: OK: {summary(protocol)}")
    return 0
