"""Extending a finished run, ageing the simulated array before scoring, keeping every
evaluation, and `reproduce` writing to a fresh time-stamped directory."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from insitu_support import cli, final_arrays, small_config

from hil.insitu.reevaluate import aged_weights
from hil.insitu.rundir import RunDir
from hil.insitu.training_run import load_run_config


@pytest.fixture(autouse=True)
def _quiet_rule_warnings() -> None:
    logging.getLogger("hil.network.learning").setLevel(logging.ERROR)


def plans(run: Path) -> list[tuple[int, str]]:
    con = sqlite3.connect(run / "journal.sqlite")
    try:
        return con.execute("SELECT seq, digest FROM plans ORDER BY seq").fetchall()
    finally:
        con.close()


def test_a_finished_run_extended_equals_a_longer_run(tmp_path: Path) -> None:
    short = small_config(tmp_path, training={"epochs": 3})
    done = cli("train", "--config", str(short), "--out", str(tmp_path / "ext"), "--quiet")
    assert done.returncode == 0, done.stderr
    longer = small_config(tmp_path, training={"epochs": 5})
    done = cli("train", "--config", str(longer), "--out", str(tmp_path / "ref"), "--quiet")
    assert done.returncode == 0, done.stderr
    fewer = cli("train", "--resume", str(tmp_path / "ext"), "--epochs", "2", "--quiet")
    assert fewer.returncode == 2 and "can only add epochs" in fewer.stderr
    done = cli("train", "--resume", str(tmp_path / "ext"), "--epochs", "5", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "extended from 3 to 5 epochs" in done.stdout
    got, ref = final_arrays(tmp_path / "ext"), final_arrays(tmp_path / "ref")
    for key, value in ref.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert plans(tmp_path / "ext") == plans(tmp_path / "ref")
    report = json.loads((tmp_path / "ext" / "report.json").read_text())
    assert report["epochs_completed"] == 5 and report["status"] == "complete"
    assert load_run_config(RunDir(tmp_path / "ext")).training.epochs == 5


@pytest.fixture(scope="module")
def drifting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("drift")
    cfg = small_config(
        tmp, training={"epochs": 2}, backend={"preset": "epiram", "options": {"drift__nu": 0.05}}
    )
    done = cli("train", "--config", str(cfg), "--out", str(tmp / "run"), "--quiet")
    assert done.returncode == 0, done.stderr
    return tmp / "run"


def test_ageing_restores_the_end_of_training_and_lets_the_devices_drift(drifting: Path) -> None:
    rundir = RunDir(drifting)
    cfg = load_run_config(rundir)
    w0, _ = aged_weights(rundir, cfg, 25, 0.0)
    # no time passed: exactly the final read (same state, same read-noise draw)
    np.testing.assert_array_equal(w0, final_arrays(drifting)["weights"])
    w_aged, note = aged_weights(rundir, cfg, 25, 1e6)
    assert "aged 1e+06 s" in note and "nu = 0.05" in note
    # G(t) = G_p (1 + t/t0)^-nu on both devices of a pair: every weight shrinks
    assert np.abs(w_aged).mean() < 0.7 * np.abs(w0).mean()


def test_evaluate_after_keeps_every_evaluation(drifting: Path) -> None:
    first = cli("evaluate", str(drifting), "--samples", "5")
    assert first.returncode == 0, first.stderr
    aged = cli("evaluate", str(drifting), "--samples", "5", "--after", "3600")
    assert aged.returncode == 0, aged.stderr
    kept = sorted((drifting / "evaluations").glob("evaluation-*.json"))
    assert [p.name for p in kept] == ["evaluation-001.json", "evaluation-002.json"]
    one, two = (json.loads(p.read_text()) for p in kept)
    assert "final.npz" in one["source"] and "after_s" not in one
    assert two["after_s"] == 3600 and "aged 3600 s" in two["source"]
    assert json.loads((drifting / "evaluation.json").read_text()) == two
    bad = cli("evaluate", str(drifting), "--after", "-1")
    assert bad.returncode == 2 and "--after" in bad.stderr


def test_ageing_a_run_without_drift_says_so(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, training={"epochs": 1})
    assert (
        cli("train", "--config", str(cfg), "--out", str(tmp_path / "r"), "--quiet").returncode == 0
    )
    done = cli("evaluate", str(tmp_path / "r"), "--samples", "2", "--after", "10")
    assert done.returncode == 0, done.stderr
    assert "no retention drift" in done.stdout


def test_reproduce_writes_to_a_fresh_time_stamped_directory(tmp_path: Path) -> None:
    done = cli("reproduce", "--epochs", "1", "--samples", "2", "--p", "0.1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    made = list((tmp_path / "runs").glob("reproduce-*"))
    assert len(made) == 1 and (made[0] / "results.json").is_file()
    assert len(made[0].name) == len("reproduce-20261201-120000")
