"""`mrnn-hil sweep SWEEP.yaml --out DIR`: many simulated training runs, as cells on Dask.

Default: an embedded local cluster with one single-threaded worker process per core;
`--scheduler tcp://HOST:PORT` sends the same cells to an existing Dask cluster. `--resume`
continues a killed sweep: finished cells are skipped, unfinished ones resume from their
checkpoints. Ends with sweep.csv, summary.csv, sweep.png and report.md in DIR.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from protocols.errors import InputError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of simulated training runs (cells) on Dask, then tabulate and plot",
        description="Expand a sweep file (base run config + grid and/or cells over run-config "
        "field paths), check every cell, run each as a full simulated `train` run on a Dask "
        "cluster, and write sweep.csv, summary.csv (mean ± sd over seeds), sweep.png and "
        "report.md.",
    )
    p.add_argument("sweep_file", nargs="?", metavar="SWEEP.yaml", help="the sweep file")
    p.add_argument("--out", metavar="DIR", help="sweep directory (default runs/sweep-<time>)")
    p.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on an existing Dask scheduler instead of an embedded local cluster",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes of the embedded cluster (default: one per core)",
    )
    p.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="attempts after a failed one, per cell (default: the file's retries:, else 2)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the sweep in --out (skip finished cells)"
    )
    p.add_argument("--check", action="store_true", help="check the file and list the cells only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class SweepBar:
    """tqdm over cells: done, running, failed, time left."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, pr: Any) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=pr.total, initial=pr.done, unit="cell", file=sys.stderr,
                            desc="sweep", bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                            "[{elapsed}{postfix}]")  # fmt: skip
        self.bar.update(pr.done - self.bar.n)
        left = "?" if pr.eta_s is None else time.strftime("%H:%M:%S", time.gmtime(pr.eta_s))
        self.bar.set_postfix_str(
            f"done {pr.done}, running {pr.running}, failed {pr.failed}, left {left}"
        )

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from hil.sweep.engine import SweepDir, run_sweep
    from hil.sweep.results import write_results
    from hil.sweep.spec import load_sweep

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers: at least 1 (got {args.workers})")
    if args.workers is not None and args.scheduler:
        raise InputError("--workers sizes the embedded cluster; drop it with --scheduler")
    if args.retries is not None and not 0 <= args.retries <= 100:
        raise InputError(f"--retries: from 0 to 100 (got {args.retries})")
    if args.resume and not args.out:
        raise InputError("--resume needs --out DIR, the sweep to continue")
    if not args.resume and not args.sweep_file:
        raise InputError("give a sweep file (SWEEP.yaml), or --resume --out DIR")
    spec = load_sweep(args.sweep_file) if args.sweep_file else None
    if args.check:
        assert spec is not None
        print(f"{spec.source}: {len(spec.cells)} cells, all checked")
        for cell in spec.cells:
            print(f"  {cell.name}  {cell.label()}")
        return 0
    out = Path(args.out) if args.out else Path("runs") / time.strftime("sweep-%Y%m%d-%H%M%S")
    bar = SweepBar(enabled=not args.quiet)
    try:
        outcome = run_sweep(
            spec,
            out,
            resume=args.resume,
            scheduler=args.scheduler,
            workers=args.workers,
            retries=args.retries,
            on_progress=bar,
            on_event=bar.write,
        )
    except KeyboardInterrupt:
        bar.close()
        print(f"sweep interrupted; continue with `mrnn-hil sweep --resume --out {out}`",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        bar.close()
    files = write_results(SweepDir(outcome.out), outcome.spec, outcome.records)
    total = len(outcome.spec.cells)
    failed = outcome.failed
    skipped = f" ({outcome.skipped} finished before)" if outcome.skipped else ""
    print(f"sweep {outcome.out}: {total - len(failed)} of {total} cells finished{skipped}")
    for name in failed:
        errors = outcome.records[name].errors
        print(f"  cell {name} failed: {errors[-1] if errors else 'unknown error'}")
    for what, path in files.items():
        print(f"{what}: {path}")
    return 1 if failed else 0
