"""Protocol files: every malformed file gets one line naming the field, value and rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from setuptools import find_packages

from hil import cli
from protocols.errors import InputError
from protocols.protocol_file import library_files, load_protocol, parse_protocol
from protocols.spec import LimitsSpec, ProportionalScheme, ProtocolFile
from sim_backend.presets import PRESETS

BAD = Path(__file__).parent / "data" / "bad_protocols"
REPO = Path(__file__).resolve().parents[1]

#: What each malformed file's message must contain (the field path and/or the bad value).
EXPECTED: dict[str, tuple[str, ...]] = {
    "acceptance_reversed.yaml": ("acceptance.nl_ltp", "min (3) is above max (1)"),
    "amplitude_over_limit.yaml": ("pulses.set.amplitude_v", "5 V", "max_set_v = 3 V"),
    "comment_only.yaml": ("empty", "expected a mapping"),
    "compliance_at_g_max.yaml": (
        "nominal SET pulse at acceptance.g_max_s.max = 1.15e-05 S",
        "2.3e-05 A",
        "compliance_a=1e-05 A",
    ),
    "duplicate_key.json": ("key 'max_set_v' appears twice",),
    "duplicate_key.yaml": ("line 8", "key 'max_set_v' appears twice"),
    "edges_longer_than_pulse.yaml": ("pulses.set", "rise_s + fall_s"),
    "empty.yaml": ("empty", "expected a mapping"),
    "half_select_over_limit.yaml": ("v2", "1 V", "max_half_select_v = 0.8 V"),
    "huge_int.yaml": ("limits.max_pulses_per_device_per_update", "1000000000000", "100000"),
    "huge_width.yaml": ("pulses.set.width_s", "1e+300", "less than or equal to 1"),
    "infinite_limit.yaml": ("limits.max_set_v", "inf", "finite"),
    "ispp_over_limit.yaml": ("ISPP", "2.5 V", "max_set_v = 2.2 V"),
    "json_syntax.json": ("line 1, column 15", "JSON syntax error"),
    "list_top.yaml": ("top level is a list", "expected a mapping"),
    "nan_amplitude.yaml": ("pulses.set.amplitude_v", "nan", "finite"),
    "nan_width.json": ("pulses.set.width_s", "nan", "finite"),
    "negative_width.yaml": ("pulses.reset.width_s", "-1e-07", "greater than 0"),
    "rank_3.yaml": ("scheme.rank", "3", "1 or 2"),
    "read_above_programming.yaml": ("read.voltage_v", "below the smallest programming"),
    "reset_positive.yaml": ("pulses.reset", "amplitude_v < 0"),
    "scalar_top.yaml": ("top level is a str",),
    "scheme_cap_over_limit.yaml": ("scheme.max_pulses = 32", "= 8"),
    "scheme_missing.yaml": ("'scheme'", "missing"),
    "scheme_unknown_kind.yaml": ("stochastic_magic", "manhattan", "outer_product"),
    "unknown_key_scheme.yaml": ("unknown key 'scheme.cap'", "max_pulses"),
    "unknown_key_top.yaml": ("unknown key 'pulse_shape'", "pulses"),
    "version_2.yaml": ("version", "2", "version 1"),
    "wrong_extension.txt": ("'.txt'", ".yaml"),
    "wrong_type_bool.yaml": ("pulses.set.amplitude_v", "True", "valid number"),
    "wrong_type_string_int.yaml": ("scheme.max_pulses", "'16'", "valid integer"),
    "wrong_type_width.yaml": ("pulses.set.width_s", "'wide'", "valid number"),
    "yaml_syntax.yaml": ("line 3", "YAML syntax error"),
    "yaml_tab.yaml": ("line 4", "YAML syntax error"),
    "zero_width.yaml": ("pulses.set.width_s", "0", "greater than 0"),
}


def test_the_corpus_and_the_expectations_match() -> None:
    assert sorted(p.name for p in BAD.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_gives_one_line_and_exit_code_2(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = BAD / name
    assert cli.main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith(f"mrnn-hil validate: error: {path}: ")
    assert "Traceback" not in line
    for fragment in EXPECTED[name]:
        assert fragment in line, f"{fragment!r} missing from: {line}"


def test_malformed_file_through_the_installed_entry_point() -> None:
    path = BAD / "unknown_key_scheme.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown key 'scheme.cap'" in lines[0]


def test_missing_file_and_directory_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_protocol(tmp_path / "absent.yaml")
    with pytest.raises(InputError, match="is a directory"):
        load_protocol(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_protocol(bad)


def test_every_shipped_protocol_validates(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in library_files()]
    assert cli.main(["validate", *files]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == len(files)
    assert all(": OK: protocol " in line for line in out)


def test_library_has_one_protocol_per_simulator_preset() -> None:
    names = {p.stem for p in library_files()}
    assert names == set(PRESETS)
    for path in library_files():
        proto = load_protocol(path)
        assert proto.name == path.stem
        assert proto.preset == path.stem
        preset = PRESETS[path.stem]
        assert proto.pulses.set.shape() == preset.set_pulse
        assert proto.pulses.reset.shape() == preset.reset_pulse


def test_library_ships_as_package_data() -> None:
    assert "protocols.library" in find_packages(where=str(REPO), include=["protocols*"])
    text = (REPO / "pyproject.toml").read_text()
    assert '"*.yaml"' in text


def test_json_and_yaml_forms_load_to_the_same_protocol(tmp_path: Path) -> None:
    source = library_files()[0]
    data = yaml.safe_load(source.read_text())
    as_json = tmp_path / "same.json"
    as_json.write_text(json.dumps(data))
    assert load_protocol(as_json) == load_protocol(source)


def _minimal() -> dict[str, object]:
    return {
        "version": 1,
        "name": "t",
        "pulses": {
            "set": {"amplitude_v": 2.0, "width_s": 1e-7},
            "reset": {"amplitude_v": -2.0, "width_s": 1e-7},
        },
        "scheme": {"kind": "proportional"},
    }


def test_defaults_and_yaml11_exponents() -> None:
    proto = parse_protocol(_minimal())
    assert isinstance(proto.scheme, ProportionalScheme)
    assert proto.scheme.rounding == "stochastic"
    assert isinstance(proto.limits, LimitsSpec)
    # PyYAML reads "1e-7" (no decimal point) as text; the loader reads it as the number.
    text = "version: 1\nname: t\npulses:\n  set: {amplitude_v: 2, width_s: 1e-7}\n"
    text += "  reset: {amplitude_v: -2, width_s: 1e-7}\nscheme: {kind: manhattan}\n"
    loaded = parse_protocol(yaml.safe_load(text))
    assert loaded.pulses.set.width_s == pytest.approx(1e-7)
    assert loaded.pulses.set.amplitude_v == 2.0


def test_models_are_strict_and_immutable() -> None:
    proto = parse_protocol(_minimal())
    with pytest.raises(ValueError, match="frozen"):
        proto.name = "changed"  # type: ignore[misc]
    data = _minimal()
    data["pulses"] = {
        "set": {"amplitude_v": "2.0", "width_s": 1e-7},
        "reset": {"amplitude_v": -2.0, "width_s": 1e-7},
    }
    with pytest.raises(InputError, match=r"pulses\.set\.amplitude_v"):
        parse_protocol(data, "x.yaml")


def test_the_file_limits_are_safety_limits() -> None:
    proto = ProtocolFile.model_validate(_minimal())
    plain = proto.limits.safety_limits()
    assert plain.max_set_v == proto.limits.max_set_v
    assert type(plain).__name__ == "SafetyLimits"
