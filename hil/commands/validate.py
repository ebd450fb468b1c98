"""`mrnn-hil validate FILE...`: load and check pulse-protocol files.

A good file prints a one-line summary; a bad one ends in a one-line error naming the file,
the field, the bad value and what is allowed (exit code 2, no traceback).
"""

from __future__ import annotations

import argparse
from typing import Any

from protocols.protocol_file import load_protocol
from protocols.spec import ProtocolFile


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check pulse-protocol files (YAML or JSON)",
        description="Load and check pulse-protocol files: types, ranges, unknown keys, pulses "
        "against the file's own safety limits. Exit code 0 if all are valid, 2 otherwise.",
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


def run(args: argparse.Namespace) -> int:
    for path in args.files:
        protocol = load_protocol(path)
        print(f"{path}: OK: {summary(protocol)}")
    return 0
