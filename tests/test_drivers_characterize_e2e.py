"""`mrnn-hil characterize` through the serial backend on the board emulator gives the same
characterisation as on the simulator with the same preset and seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import protocols
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_serial import SerialEmulator
from hil.cli import main

PROTOCOL = Path(protocols.__file__).parent / "library" / "ideal.yaml"


def _passed_every_metric(printed: str, count: int) -> None:
    """The report of a run whose `count` judged metrics all pass: each row PASS, the summary
    line PASS, no FAIL anywhere."""
    rows = [line for line in printed.splitlines() if line.rstrip().endswith("within range")]
    assert len(rows) == count and all("  PASS  " in row for row in rows), printed
    assert f"PASS: {count}/{count} metrics within range" in printed, printed
    assert "FAIL" not in printed, printed


def test_characterize_on_the_board_emulator_matches_sim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The ideal device is noiseless: every one of the protocol's 10 judged metrics passes on
    # both backends, and the exit code says so.
    common = ["characterize", str(PROTOCOL), "--quiet", "--seed", "4", "--devices", "4"]
    assert main([*common, "--backend", "sim", "--out", str(tmp_path / "sim")]) == 0
    _passed_every_metric(capsys.readouterr().out, 10)
    reference = json.loads((tmp_path / "sim" / "characterization.json").read_text())
    core = BoardCore(make_array(2, 2, preset="ideal", seed=4))  # 4 devices: a 2 x 2 array
    with SerialEmulator(core) as emu:
        code = main(
            [*common, "--backend", "serial", "--port", emu.path, "--out", str(tmp_path / "b")]
        )
    assert code == 0
    _passed_every_metric(capsys.readouterr().out, 10)
    result = json.loads((tmp_path / "b" / "characterization.json").read_text())
    assert result["passed"] is True and result["verdicts"] == reference["verdicts"]
    assert result["metrics"] == reference["metrics"]
    assert len(core.log.entries) > 0
