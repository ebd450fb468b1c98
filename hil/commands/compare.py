"""`mrnn-hil compare RUN_DIR...`: the config fields that differ between runs, and their metrics.

Prints a table (one row per run: the differing config fields by path, accuracy at each p,
pulses, energy, refused updates, stuck devices, status); `--csv FILE` writes it as CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare run directories: differing config fields and metrics side by side",
        description="Show the run-config fields that differ between runs and each run's "
        "accuracy, pulses, energy, refused updates and stuck devices.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (two or more)")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")


def run(args: argparse.Namespace) -> int:
    from hil.insitu.compare import compare_runs, format_table, to_csv
    from hil.insitu.rundir import write_atomic

    columns, rows = compare_runs([Path(r) for r in args.runs])
    print(format_table(columns, rows))
    if args.csv:
        write_atomic(Path(args.csv), to_csv(columns, rows).encode())
        print(f"written: {args.csv}")
    return 0
