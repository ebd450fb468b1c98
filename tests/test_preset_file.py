"""Preset files: written and read back exactly, usable as --preset and --response, and a bad
file is a one-line error naming the field."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hil import cli
from protocols.errors import InputError
from protocols.fitted_response import load_fitted_response
from sim_backend import PRESETS, SimulatedCrossbar, get_preset, mean_response
from sim_backend.preset_file import dump_preset, load_preset_file


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_every_builtin_preset_round_trips_through_a_file(
    name: str, suffix: str, tmp_path: Path
) -> None:
    cfg = PRESETS[name]
    path = tmp_path / f"{name}{suffix}"
    path.write_text(dump_preset(cfg, suffix))
    loaded = get_preset(str(path))
    assert loaded == cfg
    assert loaded.digest() == cfg.digest()
    assert dict(loaded.sources) == dict(cfg.sources)


def test_a_preset_file_drives_the_simulator_like_the_builtin(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(dump_preset(PRESETS["taox_hfox"]))
    a = SimulatedCrossbar(4, 4, preset="taox_hfox", seed=2, initial="mid")
    b = SimulatedCrossbar(4, 4, preset=str(path), seed=2, initial="mid")
    assert (a.read() == b.read()).all()


def test_a_neurosim_preset_file_is_a_response_for_the_planner(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(dump_preset(PRESETS["ag_asi"]))
    assert load_fitted_response(path) == mean_response(PRESETS["ag_asi"])
    other = tmp_path / "vteam.yaml"
    other.write_text(dump_preset(PRESETS["vteam"]))
    with pytest.raises(
        InputError, match="'vteam', not a NeuroSim curve; give the file as --preset"
    ):
        load_fitted_response(other)


BASE = """format: mrnn-hil device preset
version: 1
model: {kind: neurosim, g_min_s: 1.0e-6, g_max_s: 1.0e-5, states_ltp: 50, states_ltd: 50,
        nl_ltp: 1.0, nl_ltd: -1.0}
set_pulse: {amplitude_v: 2.0, width_s: 1.0e-7}
reset_pulse: {amplitude_v: -2.0, width_s: 1.0e-7}
"""
BAD = {
    "no_format.yaml": (BASE.replace("format: mrnn-hil device preset\n", ""), "not a device preset"),
    "version.yaml": (BASE.replace("version: 1", "version: 2"), "reads preset version 1"),
    "unknown_key.yaml": (BASE + "c2c: {sigmaa: 0.1}\n", "unknown key 'c2c.sigmaa'"),
    "wrong_type.yaml": (BASE + "c2c: {sigma: lots}\n", "field 'c2c.sigma' = 'lots'"),
    "nl_range.yaml": (BASE.replace("nl_ltp: 1.0", "nl_ltp: 12"), "field 'model.nl_ltp' = 12"),
    "duplicate.yaml": (BASE + "c2c: {sigma: 0.1}\nc2c: {sigma: 0.2}\n", "key 'c2c' appears twice"),
    "below_threshold.yaml": (
        BASE + "law: {kind: threshold, v_threshold_set_v: 3.0, v_threshold_reset_v: 1.0}\n",
        "set_pulse amplitude 2 V is not above the SET threshold 3 V",
    ),
    "a_list.yaml": ("- 1\n- 2\n", "the file is a list; expected a mapping"),
}


@pytest.mark.parametrize("file", sorted(BAD))
def test_a_bad_preset_file_is_one_line_naming_the_problem(file: str, tmp_path: Path) -> None:
    text, expected = BAD[file]
    path = tmp_path / file
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_preset_file(path)
    message = str(err.value)
    assert expected in message and str(path) in message, message
    assert "\n" not in message


def test_the_base_of_the_bad_files_is_itself_good(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(BASE)
    cfg = load_preset_file(path)
    assert cfg.name == "good" and cfg.threshold_set_v == 1.0  # PulseLaw's default threshold


def test_the_cli_shows_a_preset_file_and_refuses_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(dump_preset(PRESETS["epiram"].model_copy(update={"name": "mine"})))
    assert cli.main(["devices", str(path), "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["config"]["name"] == "mine"
    assert detail["config"]["sources"]["set_pulse"].startswith("+5 V, 5 us")
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE + "c2c: {sigmaa: 1}\n")
    exe = shutil.which("mrnn-hil")
    assert exe is not None
    done = subprocess.run([exe, "devices", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mrnn-hil devices: error: {bad}: unknown key 'c2c.sigmaa'"
    ]


def test_run_configs_protocols_and_emulators_take_a_preset_file(tmp_path: Path) -> None:
    from drivers.emu_array import make_array
    from hil.commands.validate import highest_conductance, named_device
    from hil.insitu.backends import device_model
    from hil.insitu.run_config import validate_config
    from protocols.protocol_file import load_protocol

    path = tmp_path / "mine.yaml"
    path.write_text(dump_preset(PRESETS["alox_hfo2"]))
    model = device_model(validate_config({"backend": {"preset": str(path)}}))
    assert model.response == mean_response(PRESETS["alox_hfo2"])
    assert model.pulses.set.amplitude_v == 0.9 and "preset " + str(path) in model.source
    with pytest.raises(InputError, match=r"backend.preset: .*missing.yaml: no such file"):
        device_model(validate_config({"backend": {"preset": str(tmp_path / "missing.yaml")}}))
    assert make_array(2, 2, preset=str(path)).info().g_max_s == PRESETS["alox_hfo2"].g_max_s
    # validate checks the nominal pulses at the preset file's G_max when it is the highest.
    wide = tmp_path / "wide.yaml"
    wide.write_text(dump_preset(PRESETS["alox_hfo2"].with_overrides(model={"g_max_s": 8e-5})))
    protocol = tmp_path / "proto.yaml"
    text = (Path(__file__).parents[1] / "protocols/library/alox_hfo2.yaml").read_text()
    protocol.write_text(text.replace("preset: alox_hfo2", f"preset: {wide}"))
    loaded = load_protocol(protocol)
    assert highest_conductance(loaded, named_device(loaded)) == (
        8e-5,
        f"preset {str(wide)!r} G_max",
    )
