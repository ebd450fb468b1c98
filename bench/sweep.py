"""The sweep engine's speed: 8 cells on the embedded Dask cluster with 2 workers, against the
same 8 cells run one after another in this process, in the same run.

Each cell is a full simulated training run of the built-in 16 letters (N = 100, a 100 x 200
array) on `epiram` with the proportional scheme, seeds 0-7. The serial baseline calls the
cell function itself (`hil.sweep.cell.run_cell`, which the sweep runs in each worker's cell
process), so both sides do exactly the same work; the results of both must agree bit for bit.

Figures: speed-up = serial wall / sweep wall (cluster start-up included); the engine's
overhead per cell = (workers x sweep wall - the cells' own time inside the workers) / cells,
i.e. the worker time not spent in cells (start-up, scheduling, moving results, the idle tail),
shared out over the cells.

Usage: python bench/sweep.py [--epochs 150] [--cells 8] [--workers 2] [--out runs/bench-sweep]
Last line: one JSON object with every figure.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-sweep")
    args = ap.parse_args()
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)
    from hil.sweep.cell import run_cell
    from hil.sweep.engine import run_sweep
    from hil.sweep.spec import load_sweep

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sweep_file = out / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump(
            {
                "base": {
                    "training": {"epochs": args.epochs},
                    "backend": {"preset": "epiram"},
                    "evaluation": {"samples": 100},
                },
                "grid": {"seed": list(range(args.cells))},
            }
        )
    )
    spec = load_sweep(sweep_file)
    load_before = os.getloadavg()[0]

    t0 = time.perf_counter()
    serial: dict[str, dict[str, object]] = {}
    cell_s: list[float] = []
    for cell in spec.cells:
        t = time.perf_counter()
        serial[cell.name] = run_cell(
            str(out / "serial" / cell.name), cell.config, str(out / "serial" / f"{cell.name}.lock")
        )
        cell_s.append(time.perf_counter() - t)
    serial_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    outcome = run_sweep(spec, out / "sweep", workers=args.workers)
    sweep_s = time.perf_counter() - t0
    load_after = os.getloadavg()[0]

    results = {name: rec.result or {} for name, rec in outcome.records.items()}
    failed = [name for name, rec in outcome.records.items() if rec.status != "done"]
    keys = ("accuracy_p0.10", "accuracy_p0.20", "pulses", "energy_j", "refused", "stuck")
    identical = not failed and all(
        [results[n].get(k) for k in keys] == [serial[n].get(k) for k in keys] for n in serial
    )
    in_cells = sum(float(r.get("wall_s", 0.0)) for r in results.values())  # type: ignore[arg-type]
    overhead = (args.workers * sweep_s - in_cells) / len(spec.cells)
    figures = {
        "cells": len(spec.cells),
        "epochs": args.epochs,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "serial_s": round(serial_s, 2),
        "sweep_s": round(sweep_s, 2),
        "speedup": round(serial_s / sweep_s, 3),
        "cluster_startup_s": round(outcome.startup_s, 2),
        "cell_serial_s_mean": round(sum(cell_s) / len(cell_s), 2),
        "cell_in_worker_s_mean": round(in_cells / len(spec.cells), 2),
        "engine_overhead_per_cell_s": round(overhead, 2),
        "identical_results": identical,
        "failed_cells": failed,
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
    }
    print(
        f"serial {serial_s:.1f} s, sweep on {args.workers} workers {sweep_s:.1f} s "
        f"(start-up {outcome.startup_s:.1f} s): speed-up {serial_s / sweep_s:.2f}; engine "
        f"overhead {overhead:.2f} s per cell; results identical: {identical}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
