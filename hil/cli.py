"""The `mrnn-hil` entry point: one sub-command per module in `hil.commands`.

Bad input ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from protocols.backend import BackendError
from protocols.errors import InputError

#: Sub-commands in the order `--help` lists them.
COMMANDS: tuple[str, ...] = (
    "train",
    "evaluate",
    "reproduce",
    "characterize",
    "validate",
    "emulate",
    "devices",
    "sweep",
    "compare",
    "export",
)


def _load_commands() -> dict[str, ModuleType]:
    modules: dict[str, ModuleType] = {}
    for name in COMMANDS:
        module_name = f"hil.commands.{name}"
        try:
            modules[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
    return modules


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="mrnn-hil",
        description="In-situ training of memristor recurrent networks (Pineda–Almeida rule) "
        "on a simulated array or on real instruments.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _load_commands()
    for module in modules.values():
        module.add_parser(sub)
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(modules[args.command].run(args) or 0)
    except InputError as exc:
        print(f"mrnn-hil {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:  # the instrument failed mid-command (link lost, refusal)
        message = " ".join(str(exc).split())
        print(f"mrnn-hil {args.command}: instrument error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mrnn-hil {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
