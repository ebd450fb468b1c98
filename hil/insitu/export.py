"""A run directory in field-standard files: the journal's tables as CSV, the arrays as HDF5.

`export_run(RUN)` writes into `RUN/export/` (or another directory):

- `plans.csv`, `presentations.csv`, `epochs.csv`, `events.csv`, `meta.csv`: every row of the
  journal's tables (the kept binary copies of plans are left out);
- `arrays.h5` (h5py): `/final/*` (the final read: conductances, G+ / G-, effective and raw
  weights, pulses per device, stuck mask), `/history/conductance_s` (the snapshots over
  training, with their `position` and `epochs`), and `/checkpoints/<position>/*` (the tracked
  conductances and run pulse counts of the checkpoints kept). Every dataset carries a `units`
  attribute; the file carries the resolved run config (`run_config`, JSON) and the run's
  status as attributes.

Reading the run never changes it; every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hil.insitu.compare import journal_status
from hil.insitu.history import snapshots
from hil.insitu.rundir import RunDir, RunDirError, write_atomic

TABLES = ("plans", "presentations", "epochs", "events", "meta")

#: Units of the arrays of final.npz and of the checkpoints.
UNITS: dict[str, str] = {
    "conductance_s": "S",
    "g_plus_s": "S",
    "g_minus_s": "S",
    "weights": "1",
    "weights_raw": "1",
    "weights_estimate": "1",
    "pulse_counts": "pulses",
    "stuck": "1 (true: stuck)",
    "g_scale": "S per unit weight",
    "g_est": "S",
    "run_counts": "pulses",
}

DESCRIPTIONS: dict[str, str] = {
    "conductance_s": "final read of the physical array (rows x cols)",
    "g_plus_s": "G+ of each weight's differential pair (N x N)",
    "g_minus_s": "G- of each weight's differential pair (N x N)",
    "weights": "effective weights the network uses ((W + W^T)/2 when tied)",
    "weights_raw": "(G+ - G-) / g_scale, as read",
    "weights_estimate": "effective weights from the controller's tracked conductances",
    "pulse_counts": "pulses each device received during the run",
    "stuck": "devices the controller excluded as stuck",
    "g_scale": "conductance per unit weight of the mapping",
    "g_est": "the controller's tracked conductances at the checkpoint",
    "run_counts": "pulses per device up to the checkpoint",
}


def journal_tables(journal: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every journal table's columns and rows (read-only), without binary columns."""
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10.0)
    try:
        out = {}
        for table in TABLES:
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
            keep = [c for c in cols if c != "plan"]
            if not keep:
                continue
            order = cols[0]
            rows = con.execute(f"SELECT {', '.join(keep)} FROM {table} ORDER BY {order}").fetchall()
            out[table] = (keep, rows)
        return out
    except sqlite3.Error as exc:
        raise RunDirError(f"cannot read {journal}: {exc}") from None
    finally:
        con.close()


def _csv(columns: list[str], rows: list[tuple[Any, ...]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue().encode()


def _dataset(group: Any, name: str, data: np.ndarray, units: str | None = None) -> None:
    arr = np.asarray(data)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    ds = group.create_dataset(name, data=arr, compression="gzip" if arr.size > 64 else None)
    ds.attrs["units"] = units if units is not None else UNITS.get(name, "1")
    if name in DESCRIPTIONS:
        ds.attrs["description"] = DESCRIPTIONS[name]


def write_hdf5(rundir: RunDir, path: Path) -> None:
    """The per-device arrays of the run in one HDF5 file, written to a temporary name first."""
    import h5py

    config = rundir.read_json("config.json")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["run_config"] = json.dumps(config, sort_keys=True)
            f.attrs["run_directory"] = str(rundir.path.resolve())
            f.attrs["status"] = journal_status(rundir.path) or "unknown"
            f.attrs["conventions"] = (
                "units in each dataset's `units` attribute (SI: S for conductance); arrays "
                "indexed [array row, array column] or [weight row, weight column]"
            )
            if rundir.final_path.is_file():
                g = f.create_group("final")
                for name, arr in rundir.load_npz(rundir.final_path).items():
                    _dataset(g, name, arr)
            snaps = snapshots(rundir)
            if snaps:
                h = f.create_group("history")
                _dataset(h, "conductance_s", np.stack([s.conductance_s for s in snaps]), "S")
                h["conductance_s"].attrs["description"] = (
                    "tracked conductances at the start and at every accuracy-curve epoch"
                )
                _dataset(h, "position", np.array([s.position for s in snaps]), "presentations")
                _dataset(h, "epochs", np.array([s.epochs for s in snaps]), "epochs")
            c = f.create_group("checkpoints")
            for ckpt in rundir.checkpoints():
                try:
                    arrays, meta = rundir.load_checkpoint(ckpt)
                except (RunDirError, ValueError, KeyError):
                    continue
                group = c.create_group(f"{int(meta['position']):010d}")
                group.attrs["position"] = int(meta["position"])
                for name in ("g_est", "run_counts"):
                    if name in arrays:
                        _dataset(group, name, arrays[name])
                if "stuck_mask" in arrays:
                    _dataset(group, "stuck", arrays["stuck_mask"] > 0)
        os.replace(tmp, path)
        tmp = ""
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)


def export_run(run: str | Path, out: str | Path | None = None) -> dict[str, Path]:
    """Write the CSV tables and arrays.h5 of a run; the files written, by name."""
    rundir = RunDir.open(run)
    dest = Path(out) if out is not None else rundir.path / "export"
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create {dest}: {exc.strerror or exc}") from None
    written: dict[str, Path] = {}
    if rundir.journal_path.is_file():
        for table, (columns, rows) in journal_tables(rundir.journal_path).items():
            path = dest / f"{table}.csv"
            write_atomic(path, _csv(columns, rows))
            written[table] = path
    h5 = dest / "arrays.h5"
    try:
        write_hdf5(rundir, h5)
    except OSError as exc:
        raise RunDirError(f"cannot write {h5}: {exc}") from None
    written["arrays"] = h5
    return written
