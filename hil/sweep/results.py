"""A sweep's results: sweep.csv, summary.csv (mean ± sd over seeds), sweep.png and report.md.

`sweep.csv` has one row per cell: `cell`, one column per swept field path (named by the path),
the in-situ accuracy at each p (`accuracy_p0.10`, ...), pulses, energy (J), refused updates,
stuck devices, the wall time of the cell (s) and its status. The summary groups the cells
that differ only in `seed` and gives each metric's mean and sample standard deviation.
Everything but the wall time follows from the cells' run directories alone, so an
interrupted and resumed sweep writes the same files as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from hil.insitu.compare import METRICS
from hil.insitu.rundir import write_atomic
from hil.sweep.engine import CellRecord, SweepDir
from hil.sweep.spec import SweepSpec, render

SUMMARY_METRICS_EXTRA = METRICS


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def cell_rows(
    spec: SweepSpec, records: dict[str, CellRecord]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per cell, in cell order."""
    acc = sorted(
        {k for r in records.values() if r.result for k in r.result if k.startswith("accuracy_")}
    )
    columns = ["cell", *spec.paths, *acc, *METRICS, "wall_s", "status"]
    rows = []
    for cell in spec.cells:
        rec = records[cell.name]
        row: dict[str, Any] = {"cell": cell.name}
        row.update({p: cell.values.get(p) for p in spec.paths})
        if rec.status == "done" and rec.result is not None:
            row.update({k: rec.result.get(k) for k in (*acc, *METRICS, "wall_s")})
            row["status"] = rec.result.get("status", "complete")
        else:
            row["status"] = rec.status
        rows.append(row)
    return columns, rows


def to_csv(columns: list[str], rows: list[dict[str, Any]], paths: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([render(r.get(c)) if c in paths else _num(r.get(c)) for c in columns])
    return buf.getvalue()


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def summary(
    spec: SweepSpec, columns: list[str], rows: list[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Cells grouped over `seed`: per group n and every metric's mean and sd."""
    keys = [p for p in spec.paths if p != "seed"]
    metrics = [c for c in columns if c.startswith("accuracy_")] + list(METRICS)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(json.dumps([r.get(k) for k in keys], sort_keys=True), []).append(r)
    out_cols = [*keys, "n", "failed"]
    for m in metrics:
        out_cols += [f"{m}_mean", f"{m}_sd"]
    out = []
    for members in groups.values():
        done = [r for r in members if r.get("pulses") is not None]
        g: dict[str, Any] = {k: members[0].get(k) for k in keys}
        g["n"] = len(done)
        g["failed"] = len(members) - len(done)
        for m in metrics:
            vals = [float(r[m]) for r in done if r.get(m) is not None]
            g[f"{m}_mean"], g[f"{m}_sd"] = _mean_sd(vals)
        out.append(g)
    return out_cols, out


def _label(group: dict[str, Any], keys: list[str]) -> str:
    return "\n".join(render(group[k]) for k in keys) or "all"


def plot(path: Path, keys: list[str], groups: list[dict[str, Any]], acc_cols: list[str]) -> None:
    """Accuracy at each p and pulses per group of cells, mean ± sd over seeds as error bars."""
    labels = [_label(g, keys) for g in groups]
    x = list(range(len(groups)))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(9.0, 0.9 * len(groups) + 4), 4.6))
    width = 0.8 / max(len(acc_cols), 1)
    for i, col in enumerate(acc_cols):
        means = [g[f"{col}_mean"] if g[f"{col}_mean"] is not None else math.nan for g in groups]
        sds = [g[f"{col}_sd"] or 0.0 for g in groups]
        xs = [v + (i - (len(acc_cols) - 1) / 2) * width for v in x]
        ax1.bar(xs, means, width, yerr=sds, capsize=3, label=col.replace("accuracy_p", "p = "))
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("in-situ accuracy (MSE < 0.1)")
    ax1.set_title("accuracy per cell (mean ± sd over seeds)")
    if acc_cols:
        ax1.legend(fontsize=8)
    means = [g["pulses_mean"] if g["pulses_mean"] is not None else math.nan for g in groups]
    sds = [g["pulses_sd"] or 0.0 for g in groups]
    ax2.bar(x, means, 0.6, yerr=sds, capsize=3, color="tab:gray")
    if any(m > 0 for m in means if not math.isnan(m)):
        ax2.set_yscale("log")
    ax2.set_ylabel("pulses per run")
    ax2.set_title("pulses per cell (mean ± sd over seeds)")
    for ax in (ax1, ax2):
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=7, rotation=90 if len(groups) > 8 else 0)
    if keys:
        fig.text(0.5, -0.02, "cells: " + " / ".join(keys), ha="center", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def _pm(mean: float | None, sd: float | None, fmt: str) -> str:
    if mean is None:
        return "-"
    text = format(mean, fmt)
    return text if sd is None else f"{text} ± {format(sd, fmt)}"


def _baselines(sd: SweepDir, spec: SweepSpec, records: dict[str, CellRecord]) -> list[str]:
    """The Hopfield and nearest-pattern accuracies the cells were scored against, per seed."""
    seen: dict[str, tuple[str, dict[str, dict[str, float]]]] = {}
    for cell in spec.cells:
        if records[cell.name].status != "done":
            continue
        path = sd.cell_dir(cell) / "report.json"
        try:
            acc = json.loads(path.read_text())["accuracy"]
        except (OSError, ValueError, KeyError):
            continue
        base = {k: v for k, v in acc.items() if k != "in_situ"}
        key = json.dumps(base, sort_keys=True)
        if key not in seen:
            seen[key] = (f"seed {cell.config.get('seed', 0)}", base)
    if not seen:
        return []
    lines = ["## Baselines", "", "Same test sets as the cells they belong to.", ""]
    ps = sorted({p for _, b in seen.values() for row in b.values() for p in row}, key=float)
    lines.append("| rule | cells | " + " | ".join(f"p = {p}" for p in ps) + " |")
    lines.append("|---|---|" + "---|" * len(ps))
    for label, base in seen.values():
        for rule, row in base.items():
            vals = " | ".join(f"{row[p]:.3f}" if p in row else "-" for p in ps)
            lines.append(f"| {rule} | {label} | {vals} |")
    return [*lines, ""]


def write_results(sd: SweepDir, spec: SweepSpec, records: dict[str, CellRecord]) -> dict[str, Path]:
    """Write sweep.csv, summary.csv, sweep.png and report.md into the sweep directory."""
    columns, rows = cell_rows(spec, records)
    write_atomic(sd.path / "sweep.csv", to_csv(columns, rows, spec.paths).encode())
    keys = [p for p in spec.paths if p != "seed"]
    s_cols, groups = summary(spec, columns, rows)
    write_atomic(sd.path / "summary.csv", to_csv(s_cols, groups, tuple(keys)).encode())
    acc_cols = [c for c in columns if c.startswith("accuracy_")]
    plot(sd.path / "sweep.png", keys, groups, acc_cols)
    failed = [c for c in spec.cells if records[c.name].status == "failed"]
    lines = [
        "# Sweep",
        "",
        f"- sweep file: `{spec.source}`; {len(spec.cells)} cells, "
        f"{len(spec.cells) - len(failed)} finished, {len(failed)} failed",
        f"- swept field paths: {', '.join(f'`{p}`' for p in spec.paths)}",
        "- every cell is a full run directory under `cells/` (journal, checkpoints, report)",
        "",
        "## Summary (mean ± sd over seeds)",
        "",
        "| "
        + " | ".join(
            [
                *keys,
                "n",
                *(c.replace("accuracy_", "acc ") for c in acc_cols),
                "pulses",
                "energy (J)",
                "refused",
                "stuck",
            ]
        )
        + " |",
        "|" + "---|" * (len(keys) + 1 + len(acc_cols) + 4),
    ]
    for g in groups:
        cells = [render(g[k]) for k in keys] + [str(g["n"])]
        cells += [_pm(g[f"{c}_mean"], g[f"{c}_sd"], ".3f") for c in acc_cols]
        cells += [
            _pm(g["pulses_mean"], g["pulses_sd"], ".3g"),
            _pm(g["energy_j_mean"], g["energy_j_sd"], ".3g"),
            _pm(g["refused_mean"], g["refused_sd"], ".3g"),
            _pm(g["stuck_mean"], g["stuck_sd"], ".3g"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![accuracy and pulses per cell](sweep.png)", ""]
    lines += _baselines(sd, spec, records)
    if failed:
        lines += ["## Failed cells", ""]
        for cell in failed:
            lines.append(f"- cell {cell.name} ({cell.label()}):")
            lines += [f"  - {e}" for e in records[cell.name].errors]
        lines.append("")
    lines += [
        "## Cells",
        "",
        "| cell | " + " | ".join(spec.paths) + " | status | run |",
        "|---|" + "---|" * (len(spec.paths) + 2),
    ]
    for cell, row in zip(spec.cells, rows, strict=True):
        vals = " | ".join(render(cell.values.get(p)) for p in spec.paths)
        lines.append(
            f"| {cell.name} | {vals} | {row['status']} | [cells/{cell.name}]"
            f"(cells/{cell.name}/report.md) |"
        )
    lines += ["", "Per cell: `sweep.csv`; per group: `summary.csv`.", ""]
    write_atomic(sd.path / "report.md", "\n".join(lines).encode())
    return {
        "csv": sd.path / "sweep.csv",
        "summary": sd.path / "summary.csv",
        "figure": sd.path / "sweep.png",
        "report": sd.path / "report.md",
    }
