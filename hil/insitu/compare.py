"""Run directories side by side: the config fields that differ, and each run's metrics.

Reads only what a run directory holds (`config.json`, `report.json`, the journal's status);
nothing is written to the runs. Used by `mrnn-hil compare` and by the sweep's results.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

from hil.insitu.rundir import RunDir, RunDirError

#: Metric columns after the accuracy columns, in order.
METRICS: tuple[str, ...] = ("pulses", "energy_j", "refused", "stuck")


def accuracy_column(p: str | float) -> str:
    """The column of the in-situ accuracy at corruption `p` (`accuracy_p0.10`)."""
    return f"accuracy_p{float(p):.2f}"


def journal_status(path: Path) -> str | None:
    """The status the run wrote last (`running`, `complete`, `stopped`), read-only."""
    journal = Path(path) / "journal.sqlite"
    if not journal.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5.0)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return None if row is None else str(json.loads(row[0]))


def is_finished(path: Path) -> bool:
    """A run that reached its end: report written and the journal's status set last."""
    return (Path(path) / "report.json").is_file() and journal_status(path) in (
        "complete",
        "stopped",
    )


def report_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a report: in-situ accuracy per p, pulses, energy, refused, stuck."""
    out: dict[str, Any] = {}
    for p, acc in sorted(report["accuracy"]["in_situ"].items(), key=lambda kv: float(kv[0])):
        out[accuracy_column(p)] = float(acc)
    t = report["totals"]
    out["pulses"] = int(t["pulses"])
    out["energy_j"] = float(t["energy_j"])
    out["refused"] = int(t["refused"])
    out["stuck"] = int(report["stuck"]["stuck_devices"])
    out["status"] = str(report["status"])
    return out


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config data as dotted field paths -> leaf values (lists stay whole)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def compare_runs(paths: list[Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per run: `run`, the differing config fields, then the metrics."""
    if len(paths) < 2:
        raise RunDirError("compare needs at least two run directories")
    configs = []
    rows: list[dict[str, Any]] = []
    for path in paths:
        rd = RunDir.open(path)
        configs.append(flatten(rd.read_json("config.json")))
        row: dict[str, Any] = {"run": str(path)}
        if (rd.path / "report.json").is_file():
            row.update(report_metrics(rd.read_json("report.json")))
        else:
            row["status"] = journal_status(rd.path) or "not started"
        rows.append(row)
    keys: list[str] = []
    for cfg in configs:
        keys += [k for k in cfg if k not in keys]
    differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    for row, cfg in zip(rows, configs, strict=True):
        row.update({k: cfg.get(k) for k in differ})
    acc = sorted({k for r in rows for k in r if k.startswith("accuracy_")})
    columns = ["run", *differ, *acc, *METRICS, "status"]
    return columns, rows


def format_table(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """A plain-text table for the terminal."""
    body = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(line.rstrip() for line in lines)


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """The same table as CSV (full precision, empty cells for missing values)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else _csv_value(r.get(c)) for c in columns])
    return buf.getvalue()


def _csv_value(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
