"""`mrnn-hil characterize` through the serial backend on the board emulator gives the same
characterisation as on the simulator with the same preset and seed."""

from __future__ import annotations

import json
from pathlib import Path

import protocols
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_serial import SerialEmulator
from hil.cli import main

PROTOCOL = Path(protocols.__file__).parent / "library" / "ideal.yaml"


def test_characterize_on_the_board_emulator_matches_sim(tmp_path: Path) -> None:
    common = ["characterize", str(PROTOCOL), "--quiet", "--seed", "4", "--devices", "4"]
    assert main([*common, "--backend", "sim", "--out", str(tmp_path / "sim")]) in (0, 1)
    reference = json.loads((tmp_path / "sim" / "characterization.json").read_text())
    core = BoardCore(make_array(2, 2, preset="ideal", seed=4))  # 4 devices: a 2 x 2 array
    with SerialEmulator(core) as emu:
        code = main(
            [*common, "--backend", "serial", "--port", emu.path, "--out", str(tmp_path / "b")]
        )
    assert code in (0, 1)
    result = json.loads((tmp_path / "b" / "characterization.json").read_text())
    assert result["metrics"] == reference["metrics"]
    assert len(core.log.entries) > 0
