"""`mrnn-hil export RUN_DIR`: the journal's tables as CSV and the per-device arrays as HDF5.

Writes RUN_DIR/export/ (or `--out DIR`): plans.csv, presentations.csv, epochs.csv,
events.csv, meta.csv and arrays.h5 (final state, conductances over training, checkpoints;
units and the run config as attributes).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a run: journal tables as CSV, per-device arrays as HDF5",
        description="Write a run directory's journal tables as CSV and its per-device arrays "
        "(conductances at each snapshot, checkpoint and at the end, pulse counts, stuck mask, "
        "weights) as HDF5 with units and the run config as attributes.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by `mrnn-hil train`")
    p.add_argument("--out", metavar="DIR", help="where to write (default RUN_DIR/export)")


def run(args: argparse.Namespace) -> int:
    from hil.insitu.export import export_run

    written = export_run(args.run_dir, args.out)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
