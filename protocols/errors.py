"""Errors that mean "the input is wrong", shown to the user as one line (exit code 2)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a malformed file, an out-of-range value, a wrong shape.

    The message is complete on one line: it names the file/field, the bad value and what
    is allowed. Command-line entry points print it without a traceback and exit with 2.
    """
