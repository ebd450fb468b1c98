"""The `mrnn-hil` entry point: one sub-command per module in `hil.commands`.

Bad input ends in one line on stderr and exit code 2, never a traceback. SIGINT, SIGTERM and
SIGHUP take one path (`protocols.shutdown`): the command unwinds as after Ctrl-C, every
backend puts its instrument into its safe state, a second signal does not cut that short,
and the exit code is 128 + the signal's number. A reader of stdout that goes away
(`mrnn-hil train | head -1`) ends the command quietly with exit code 141.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from protocols.backend import BackendError
from protocols.errors import InputError
from protocols.shutdown import Terminated, exit_code, handling

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
    with handling():
        try:
            code = _main(argv)
            sys.stdout.flush()
        except BrokenPipeError:
            _drop_stdout()
            return 141  # as a shell reports a tool stopped by SIGPIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
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
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the same way out
        how = f"stopped by {exc}" if isinstance(exc, Terminated) else "interrupted"
        print(f"mrnn-hil {args.command}: {how}", file=sys.stderr)
        return exit_code(exc)


def _drop_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
