"""`--array` and `--block`: one spelling for every command that addresses devices.

`--array ROWSxCOLS` states the array's real shape (needed on `--backend visa`, where a switch
matrix cannot see how the crossbar is wired; checked against the board on `--backend serial`;
the simulated array's size on `--backend sim`). `--block R0:R1,C0:C1` picks the devices used
inside it (rows R0 to R1-1, columns C0 to C1-1), the top-left corner by default.
"""

from __future__ import annotations

import argparse


def add_shape_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--array",
        metavar="ROWSxCOLS",
        help="the whole array's shape, e.g. 8x16 (required with --backend visa: the word and "
        "bit lines as wired to the matrix)",
    )
    parser.add_argument(
        "--block",
        metavar="R0:R1,C0:C1",
        help="the devices to use inside the array: rows R0..R1-1, columns C0..C1-1 "
        "(default: the top-left corner)",
    )
