"""Run-directory tools and pictures: `compare`, `export` (CSV + HDF5), the conductance
snapshots over training, the histograms with stuck devices and the baselines on the curves."""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from insitu_support import cli, small_config

from hil.insitu.history import snapshots
from hil.insitu.run_config import load_config
from hil.insitu.rundir import RunDir
from hil.insitu.training_run import start_run


@pytest.fixture(autouse=True)
def _quiet_rule_warnings() -> None:
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two small runs that differ in seed, scheme and preset (stuck devices in the second)."""
    tmp = tmp_path_factory.mktemp("runs")
    a = start_run(load_config(small_config(tmp, training={"epochs": 4})), tmp / "a").report
    b_cfg = small_config(
        tmp,
        seed=5,
        training={"epochs": 4},
        scheme={"kind": "manhattan"},
        backend={"preset": "epiram", "options": {"faults__stuck_min_rate": 0.05}},
        run={"figures": True},
    )
    b = start_run(load_config(b_cfg), tmp / "b").report
    return {"a": tmp / "a", "b": tmp / "b", "reports": {"a": a, "b": b}}


def test_compare_shows_the_differing_fields_and_the_metrics(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "cmp.csv"
    done = cli("compare", str(runs["a"]), str(runs["b"]), "--csv", str(out))
    assert done.returncode == 0, done.stderr
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run"] for r in rows] == [str(runs["a"]), str(runs["b"])]
    cols = list(rows[0])
    for differs in ("seed", "scheme.kind", "backend.options.faults__stuck_min_rate"):
        assert differs in cols
    for same in ("training.epochs", "mapping.w_max", "backend.preset"):
        assert same not in cols
    for row, key in zip(rows, ("a", "b"), strict=True):
        report = runs["reports"][key]
        assert int(row["pulses"]) == report["totals"]["pulses"]
        assert float(row["accuracy_p0.10"]) == report["accuracy"]["in_situ"]["0.10"]
        assert int(row["stuck"]) == report["stuck"]["stuck_devices"]
    assert [r["seed"] for r in rows] == ["3", "5"]
    assert "scheme.kind" in done.stdout.splitlines()[0]


def test_compare_needs_two_run_directories(runs: dict[str, Any], tmp_path: Path) -> None:
    one = cli("compare", str(runs["a"]))
    assert one.returncode == 2 and "at least two" in one.stderr
    bad = cli("compare", str(runs["a"]), str(tmp_path))
    assert bad.returncode == 2 and "not a run directory" in bad.stderr


def test_export_writes_the_journal_tables_and_the_arrays_with_units(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    run = runs["b"]
    out = tmp_path / "exp"
    done = cli("export", str(run), "--out", str(out))
    assert done.returncode == 0, done.stderr
    con = sqlite3.connect(run / "journal.sqlite")
    try:
        for table in ("plans", "presentations", "epochs", "events"):
            with open(out / f"{table}.csv", newline="") as fh:
                rows = list(csv.reader(fh))
            assert len(rows) - 1 == con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        digests = [d for (d,) in con.execute("SELECT digest FROM plans ORDER BY seq")]
    finally:
        con.close()
    with open(out / "plans.csv", newline="") as fh:
        plans = list(csv.DictReader(fh))
    assert [p["digest"] for p in plans] == digests and "plan" not in plans[0]
    with np.load(run / "final.npz") as final, h5py.File(out / "arrays.h5") as f:
        assert json.loads(f.attrs["run_config"]) == json.loads((run / "config.json").read_text())
        assert f.attrs["status"] == "complete"
        for name in final.files:
            np.testing.assert_array_equal(f["final"][name][()], final[name])
        assert f["final/conductance_s"].attrs["units"] == "S"
        assert f["final/pulse_counts"].attrs["units"] == "pulses"
        assert f["final/stuck"][()].sum() == final["stuck"].sum() > 0
        snaps = snapshots(RunDir(run))
        hist = f["history/conductance_s"]
        assert hist.shape == (len(snaps), 25, 50) and hist.attrs["units"] == "S"
        assert list(f["history/epochs"][()]) == [0, 1, 2, 4]  # start, epoch 1, every 2, last
        np.testing.assert_array_equal(hist[-1], snaps[-1].conductance_s)
        kept = sorted(f["checkpoints"])
        assert kept and f[f"checkpoints/{kept[-1]}/g_est"].attrs["units"] == "S"


def test_the_last_snapshot_is_the_tracked_state_at_the_end(runs: dict[str, Any]) -> None:
    rd = RunDir(runs["a"])
    snaps = snapshots(rd)
    assert [s.position for s in snaps] == [0, 4, 8, 16]
    arrays, meta = rd.latest_checkpoint() or ({}, {})
    assert meta["position"] == 16
    np.testing.assert_array_equal(snaps[-1].conductance_s, arrays["g_est"].astype(np.float32))
    assert not np.array_equal(snaps[0].conductance_s, snaps[-1].conductance_s)  # it trained


def test_the_report_draws_history_histograms_and_baselines(runs: dict[str, Any]) -> None:
    report = json.loads((runs["b"] / "report.json").read_text())
    for name in ("conductance_history.png", "conductance_histogram.png", "curves.png"):
        assert name in report["figures"]
        assert (runs["b"] / name).stat().st_size > 5_000
    assert "conductance_histogram.png" in (runs["b"] / "report.md").read_text()


def test_a_run_without_figures_draws_none_and_says_so(runs: dict[str, Any]) -> None:
    """`run.figures: false` (the first run): the report's numbers, no PNG, and a note why."""
    report = json.loads((runs["a"] / "report.json").read_text())
    assert report["figures"] == [] and report["totals"]["pulses"] > 0
    assert not list(runs["a"].glob("*.png"))
    assert "none drawn (`run.figures: false`)" in (runs["a"] / "report.md").read_text()


def test_no_figures_sets_the_config_field_and_a_resume_refuses_it(tmp_path: Path) -> None:
    from hil.cli import build_parser
    from hil.commands.train import config_from_args

    parser, _ = build_parser()
    args = parser.parse_args(["train", "--no-figures"])
    assert config_from_args(args).run.figures is False
    assert config_from_args(parser.parse_args(["train"])).run.figures is True
    done = cli("train", "--resume", str(tmp_path), "--no-figures")
    assert done.returncode == 2 and "drop --no-figures" in done.stderr


def test_histogram_marks_exactly_the_stuck_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hil.insitu import report as rep

    g = np.linspace(1e-6, 1e-5, 100).reshape(10, 10)
    stuck = np.zeros((10, 10), dtype=bool)
    stuck[0, :3] = True
    drawn: list[Any] = []
    real_save = rep._save

    def keep(fig: Any, rundir: RunDir, name: str) -> str:
        drawn.append([[p.get_height() for p in c] for ax in fig.axes for c in ax.containers])
        return real_save(fig, rundir, name)

    monkeypatch.setattr(rep, "_save", keep)
    rep.plot_conductance_histograms(RunDir(tmp_path), g, g, (stuck, ~stuck), (1e-6, 1e-5))
    plus_ok, plus_stuck, minus_ok, minus_stuck = (sum(c) for c in drawn[0])
    assert (plus_ok, plus_stuck) == (97, 3)
    assert (minus_ok, minus_stuck) == (3, 97)
    assert (tmp_path / "conductance_histogram.png").stat().st_size > 5_000
