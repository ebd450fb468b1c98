"""`mrnn-hil devices`: the preset table, one preset in detail, JSON, and a bad name."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from hil import cli
from sim_backend import PRESETS, get_preset


def test_table_lists_every_preset_with_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["preset", "model"]
    for name in PRESETS:
        row = next(line for line in lines if line.startswith(name + " "))
        assert get_preset(name).model.kind in row
    ag = next(line for line in lines if line.startswith("ag_asi "))
    assert "97/100" in ag and "2.4/-4.88" in ag and "3.5 %" in ag and "12.5" in ag
    assert "3.08 nS - 38.5 nS" in ag
    # Pulses and thresholds, then where each comes from (NeuroSim's real device, Cell.cpp).
    assert "+3.2 V 300 us" in ag and "-2.8 V 300 us" in ag and "2.4/2.1 V" in ag
    block = out[out.index("Where the pulses and thresholds come from") :].splitlines()
    at = block.index("  ag_asi")
    assert block[at + 1].split(None, 1) == [
        "SET",
        "+3.2 V, 300 us: " + dict(get_preset("ag_asi").sources)["set_pulse"].split(": ", 1)[1],
    ]
    assert "Cell.cpp RealDevice" in block[at + 1] and "Cell.cpp RealDevice" in block[at + 2]
    assert block[at + 3].startswith("    thresholds  2.4 / 2.1 V: chosen")
    for name in PRESETS:
        assert f"  {name}" in block
    # The MELISO+ file device_AlOx-HfO2.yaml cited in docs/devices.md: 13.36-59.17 uS.
    alox = next(line for line in lines if line.startswith("alox_hfo2 ")).split()
    assert "4.43" in alox  # ON/OFF 59.17 / 13.36


def test_json_list_and_detail(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(PRESETS)
    taox = next(r for r in rows if r["name"] == "taox_hfox")
    assert (taox["states_ltp"], taox["nl_ltd"], taox["c2c_sigma"]) == (128, -0.63, 0.037)
    assert taox["set_pulse"] == {"amplitude_v": 1.6, "width_s": 5e-8}
    assert taox["sources"]["set_pulse"].startswith("+1.6 V, 50 ns: MELISO+")
    assert taox["threshold_set_v"] == 1.2
    assert cli.main(["devices", "vteam", "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["config"]["model"]["kind"] == "vteam"
    assert detail["threshold_set_v"] == detail["config"]["model"]["v_set_v"]
    assert detail["response"]["kind"] == "neurosim"


def test_detail_lists_sources_and_uncertain_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["devices", "pcmo"]) == 0
    out = capsys.readouterr().out
    assert "config.model.nl_ltd" in out and "-6.76" in out
    assert "config.uncertain" in out and "C2C taken as 0.5 %" in out
    assert "config.sources.set_pulse" in out and "MeasuredDevice default" in out


def test_unknown_preset_is_a_one_line_error() -> None:
    exe = shutil.which("mrnn-hil")
    assert exe is not None
    proc = subprocess.run([exe, "devices", "nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "mrnn-hil devices: error: unknown device preset 'nope'; known presets: "
        + ", ".join(PRESETS)
        + " (or a preset file path)"
    )
