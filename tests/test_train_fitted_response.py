"""Training plans with a device's measured response: characterize, then train with --response."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from insitu_support import cli, small_config

from protocols.fitted_response import load_fitted_response

LIBRARY = Path(__file__).resolve().parents[1] / "protocols" / "library"


@pytest.fixture(scope="module")
def characterized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("char")
    done = cli(
        "characterize",
        str(LIBRARY / "epiram.yaml"),
        "--backend",
        "sim",
        "--preset",
        "epiram",
        "--devices",
        "4",
        "--cycles",
        "2",
        "--seed",
        "5",
        "--out",
        str(out),
    )
    assert (out / "characterization.json").exists(), done.stderr
    return out


def test_training_plans_with_the_fitted_response_and_pins_it(
    characterized: Path, tmp_path: Path
) -> None:
    fitted = load_fitted_response(characterized)
    cfg = small_config(tmp_path, training={"epochs": 1})
    run = tmp_path / "run"
    args = ["--config", str(cfg), "--response", str(characterized), "--out", str(run)]
    done = cli("train", *args, "--quiet")
    assert done.returncode == 0, done.stderr
    resolved = json.loads((run / "config.json").read_text())
    # The model itself is embedded, so a resume does not depend on the file staying put.
    assert resolved["response"] == fitted.model_dump(mode="json")
    with sqlite3.connect(run / "journal.sqlite") as db:
        source = {k: v for k, v in db.execute("SELECT key, value FROM meta")}["device_model"]
    assert str(characterized) in source and "fitted" in source


def test_a_file_that_is_not_a_characterization_is_refused_before_any_pulse(
    tmp_path: Path,
) -> None:
    bogus = tmp_path / "characterization.json"
    bogus.write_text(json.dumps({"response": {"g_min_s": 1e-6}}))
    cfg = small_config(tmp_path, training={"epochs": 1})
    out = tmp_path / "never"
    done = cli("train", "--config", str(cfg), "--response", str(tmp_path), "--out", str(out))
    assert done.returncode == 2
    assert "not a characterization.json" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "journal.sqlite").exists()
