"""Ways around the safety limits, each tried end to end as a user would, and closed.

Every test drives `mrnn-hil train` on the simulator, on an emulator over the real pyvisa /
pyserial stacks, or as a dry-run command stream, and reads what reached the devices from an
observer of its own (the emulator's log, the stream's frames, a recording array), not from
the controller's bookkeeping.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from safety_support import (
    RecordingCrossbar,
    Seen,
    patterns_file,
    protocol_file,
    recording_array,
    serial_stream,
    visa_stream,
)

import sim_backend
from drivers.emu_board import BoardCore
from drivers.emu_scpi import Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from hil.cli import main
from hil.insitu.run_config import validate_config
from hil.insitu.training_run import start_run

LIBRARY = Path(__file__).resolve().parent.parent / "protocols" / "library"


def train(tmp: Path, *args: str, config: dict[str, Any] | None = None) -> int:
    """`mrnn-hil train` on the 4-unit patterns, one epoch, quiet; the exit code."""
    extra: list[str] = []
    if config is not None:
        path = tmp / f"config-{len(list(tmp.glob('config-*')))}.yaml"
        path.write_text(yaml.safe_dump(config))
        extra = ["--config", str(path)]
    argv = ["train", "--quiet", "--epochs", "1", "--patterns", str(patterns_file(tmp))]
    return main([*argv, *extra, *args])


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Every `--backend sim` run builds a recording simulated array."""
    RecordingCrossbar.seen = Seen()
    monkeypatch.setattr(sim_backend, "SimulatedCrossbar", RecordingCrossbar)
    return RecordingCrossbar.seen


# -- a run config's limits: no silent raise, no ceiling breached --------------------------
ISPP_22V = {"kind": "write_verify", "v_step_v": 2.0, "max_ispp_steps": 10}


def test_run_config_limits_over_the_ceiling_never_reach_the_simulator(
    tmp_path: Path, recorded: Seen, capsys: pytest.CaptureFixture[str]
) -> None:
    """limits: 25 V with a 2 V ISPP step once put 22 V on simulated devices whose protocol
    caps 3 V; now the run config is refused before the array exists."""
    config = {"limits": {"max_set_v": 25.0, "max_reset_v": 25.0}, "scheme": ISPP_22V}
    code = train(
        tmp_path, "--protocol", str(LIBRARY / "taox_hfox.yaml"), "--out", str(tmp_path / "run"),
        config=config,
    )  # fmt: skip
    assert code == 2
    assert "less than or equal to 20" in capsys.readouterr().err
    assert recorded.pulses == [] and recorded.reads == []
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("backend", "volts"), [("visa", 21.0), ("serial", 5.9)])
def test_run_config_cannot_raise_the_protocols_limits_unnamed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str, volts: float
) -> None:
    """A run config's limits once replaced the protocol's: ±20.9 V trains in a VISA stream,
    ±5.9 V frames in a pulse-board stream, under a 3 V protocol. Now raising a field needs
    `allow_raise` naming it, and nothing is written before the refusal."""
    step = (volts - 2.0) / 10
    config = {
        "limits": {"max_set_v": volts, "max_reset_v": volts},
        "scheme": {"kind": "write_verify", "v_step_v": step, "max_ispp_steps": 10},
        "backend": {"options": {"min_width_s": 1e-9}} if backend == "visa" else {},
    }
    stream = tmp_path / "stream.txt"
    code = train(
        tmp_path, "--protocol", str(LIBRARY / "taox_hfox.yaml"), "--backend", backend,
        "--dry-run", str(stream), "--out", str(tmp_path / "run"), config=config,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "allow_raise" in err or "less than or equal to 20" in err
    assert not stream.exists() and not (tmp_path / "run").exists()


def test_a_raise_must_name_each_field_and_is_logged_and_capped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The opt-in names each raised field; it is logged on stderr and in the journal, and
    the raised value still binds (ISPP climbs to it, never past it)."""
    # TaOx/HfOx pulses at 1.6 V; the protocol caps them at 1.8 V, the run raises that to 2.2.
    protocol = protocol_file(tmp_path, limits={"max_set_v": 1.8, "max_reset_v": 1.8})
    stream = tmp_path / "stream.txt"
    out = tmp_path / "run"
    args = ("--protocol", str(protocol), "--backend", "serial", "--dry-run", str(stream))
    config: dict[str, Any] = {
        "limits": {"max_set_v": 2.2, "max_reset_v": 2.2, "allow_raise": ["max_set_v"]},
        "scheme": {"kind": "write_verify", "v_step_v": 0.1, "max_ispp_steps": 6},
    }
    assert train(tmp_path, *args, "--out", str(out), config=config) == 2
    assert "add `allow_raise: [max_reset_v]`" in capsys.readouterr().err
    assert not stream.exists() and not out.exists()
    config["limits"]["allow_raise"] = ["max_set_v", "max_reset_v"]
    assert train(tmp_path, *args, "--out", str(out), config=config) == 0
    assert "max_set_v 1.8 -> 2.2, max_reset_v 1.8 -> 2.2" in capsys.readouterr().err
    seen = serial_stream(stream.read_text())
    assert 1.8 < max(seen.top_set_v, seen.top_reset_v) <= 2.2 + 1e-12
    with sqlite3.connect(out / "journal.sqlite") as db:
        (raised,) = db.execute("SELECT value FROM meta WHERE key = 'limits_raised'").fetchone()
        (event,) = db.execute("SELECT message FROM events WHERE kind = 'limits'").fetchone()
    assert json.loads(raised) == ["max_set_v 1.8 -> 2.2", "max_reset_v 1.8 -> 2.2"]
    assert "allow_raise" in event
    pinned = json.loads((out / "config.json").read_text())["limits"]
    assert pinned["max_set_v"] == 2.2 and pinned["allow_raise"] == ["max_set_v", "max_reset_v"]


# -- a partial override keeps every other field ------------------------------------------------
def test_partial_override_keeps_the_protocols_half_select_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`limits: {compliance_a: ...}` once reset the protocol's max_half_select_v, and V/2
    plans went out at 0.8 V (half of TaOx/HfOx's 1.6 V) on half-selected cells. The override
    now merges field by field, so the V/2 scheme of the run config is refused against the
    protocol's 0.7 V."""
    protocol = protocol_file(tmp_path, limits={"max_half_select_v": 0.7})
    stream = tmp_path / "stream.txt"
    config = {
        "limits": {"compliance_a": 0.0005},
        "scheme": {"kind": "proportional", "bias": "v2"},
    }
    code = train(
        tmp_path, "--protocol", str(protocol), "--backend", "serial", "--dry-run", str(stream),
        "--out", str(tmp_path / "run"), config=config,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "max_half_select_v = 0.7" in err
    assert not stream.exists() or serial_stream(stream.read_text()).half_select_v() <= 0.7


def test_partial_override_is_merged_into_the_resolved_config(tmp_path: Path) -> None:
    protocol = protocol_file(tmp_path, limits={"max_half_select_v": 0.9})
    out = tmp_path / "run"
    config = {"limits": {"compliance_a": 0.0005}}
    assert train(tmp_path, "--protocol", str(protocol), "--out", str(out), config=config) == 0
    limits = json.loads((out / "config.json").read_text())["limits"]
    assert limits["compliance_a"] == 0.0005
    assert limits["max_half_select_v"] == 0.9  # the protocol's, kept
    assert limits["max_set_v"] == 2.4  # the protocol's (1.5 x TaOx/HfOx's 1.6 V)


# -- resume under the config and protocol the run started with ---------------------------
class Kill(Exception):
    """Stands for the process being killed mid-run."""


def killed_run(tmp: Path, data: dict[str, Any], after: int = 3) -> Path:
    """A run stopped mid-training (as by a kill): checkpoints and journal left behind."""
    cfg = validate_config(data)
    out = tmp / "run"

    def progress(state: Any, total: int) -> None:
        if state.position >= after:
            raise Kill

    with pytest.raises(Kill):
        start_run(cfg, out, progress=progress)
    return out


def plans(run: Path) -> int:
    with sqlite3.connect(run / "journal.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM plans").fetchone()[0])


def base_config(tmp: Path, protocol: Path) -> dict[str, Any]:
    return {
        "seed": 1,
        "protocol": str(protocol),
        "training": {"patterns": str(patterns_file(tmp)), "epochs": 3},
        "evaluation": {"samples": 5, "curve_samples": 2},
        "run": {"figures": False},
    }


def test_resume_refuses_an_edited_config_json_naming_the_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tighter limit and another scheme written into a killed run's config.json once
    resumed as 'clean resume'; the journal's digest now refuses it, naming what changed."""
    run = killed_run(tmp_path, base_config(tmp_path, LIBRARY / "taox_hfox.yaml"))
    sent = plans(run)
    config = json.loads((run / "config.json").read_text())
    config["limits"]["max_set_v"] = 2.2  # tighter than the protocol's 2.4
    config["scheme"] = {"kind": "manhattan"}
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "limits.max_set_v" in err and "scheme.kind" in err and "refusing to resume" in err
    assert plans(run) == sent


def test_resume_refuses_a_changed_protocol_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protocol = protocol_file(tmp_path)
    run = killed_run(tmp_path, base_config(tmp_path, protocol))
    sent = plans(run)
    data = yaml.safe_load(protocol.read_text())
    data["limits"]["max_set_v"] = data["limits"]["max_reset_v"] = 5.9
    protocol.write_text(yaml.safe_dump(data))
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "protocol file's content changed" in err and "limits.max_set_v" in err
    assert plans(run) == sent


def test_resume_of_a_killed_serial_run_with_raised_limits_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reproduced case: a killed pulse-board run, its config.json given 5.9 V limits
    and an ISPP scheme that climbs to them; the resume sent ±5.9 V frames."""
    array = recording_array(8, 16, preset="epiram", seed=2)
    with SerialEmulator(BoardCore(array)) as emu:
        data = base_config(tmp_path, LIBRARY / "taox_hfox.yaml")
        data["backend"] = {"kind": "serial", "port": emu.path}
        run = killed_run(tmp_path, data)
        before = len(array.seen.pulses)
        config = json.loads((run / "config.json").read_text())
        config["limits"].update(max_set_v=5.9, max_reset_v=5.9)
        config["scheme"] = {"kind": "write_verify", "v_step_v": 0.39, "max_ispp_steps": 10}
        (run / "config.json").write_text(json.dumps(config))
        code = main(["train", "--resume", str(run), "--quiet"])
    assert code == 2, capsys.readouterr().err
    assert len(array.seen.pulses) == before
    assert array.seen.top_set_v <= 3.0 and array.seen.top_reset_v <= 3.0


def test_untouched_run_resumes_and_completes(tmp_path: Path) -> None:
    run = killed_run(tmp_path, base_config(tmp_path, LIBRARY / "taox_hfox.yaml"))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "report.json").read_text())["status"] == "complete"


# -- reads use the protocol's read voltage ------------------------------------------------------
def low_voltage_protocol(tmp: Path) -> Path:
    """A protocol for a device switching near 0.11 V (the 0.125 V default read was above)."""
    return protocol_file(
        tmp,
        pulses={
            "set": {"amplitude_v": 0.11, "width_s": 1e-4},
            "reset": {"amplitude_v": -0.11, "width_s": 1e-4},
        },
        read={"voltage_v": 0.05, "averages": 1},
        limits={"max_set_v": 0.2, "max_reset_v": 0.2},
    )


def test_visa_station_reads_at_the_protocols_read_voltage(tmp_path: Path) -> None:
    protocol = low_voltage_protocol(tmp_path)
    station = Station(recording_array(8, 16, preset="epiram", seed=1))
    with ScpiEmulator(station) as emu:
        levels: list[float] = []
        measure = emu.smu._measure

        def spy() -> str:
            levels.append(emu.smu.base_v)
            return measure()

        emu.smu._measure = spy  # type: ignore[method-assign]
        code = train(
            tmp_path, "--protocol", str(protocol), "--backend", "visa", "--array", "8x16",
            "--resource", emu.smu_resource, "--matrix-resource", emu.matrix_resource,
            "--out", str(tmp_path / "run"), config={"programming": {"method": "none"}},
        )  # fmt: skip
    assert code == 0
    assert levels and set(levels) == {0.05}


def test_a_read_voltage_option_above_the_protocols_is_refused_before_the_first_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`backend.options.read_v: 1.0` once read at 1 V, five times the protocol's limit."""
    stream = tmp_path / "stream.txt"
    code = train(
        tmp_path, "--protocol", str(low_voltage_protocol(tmp_path)), "--backend", "visa",
        "--dry-run", str(stream), "--out", str(tmp_path / "run"),
        config={"backend": {"options": {"read_v": 1.0}}, "programming": {"method": "none"}},
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "read_v = 1 V" in err
    assert not stream.exists() or max(visa_stream(stream.read_text()).reads) < 0.11


def test_a_lower_read_voltage_option_is_used(tmp_path: Path) -> None:
    stream = tmp_path / "stream.txt"
    code = train(
        tmp_path, "--protocol", str(low_voltage_protocol(tmp_path)), "--backend", "visa",
        "--dry-run", str(stream), "--out", str(tmp_path / "run"),
        config={"backend": {"options": {"read_v": 0.02}}, "programming": {"method": "none"}},
    )  # fmt: skip
    assert code == 0
    seen = visa_stream(stream.read_text())
    assert seen.reads and set(seen.reads) == {0.02}


# -- compatibility before the run directory and the first pulse -----------------------------
def test_a_scheme_the_station_cannot_bias_is_refused_before_any_pulse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--protocol epiram.yaml --backend visa` once sent thousands of W0 pulses, then
    stopped on the V/2 bias the SMU station cannot do, leaving a run that cannot resume."""
    station = Station(recording_array(8, 16, preset="epiram", seed=1), min_width_s=1e-9)
    with ScpiEmulator(station) as emu:
        code = train(
            tmp_path, "--protocol", str(LIBRARY / "epiram.yaml"), "--backend", "visa",
            "--resource", emu.smu_resource, "--matrix-resource", emu.matrix_resource,
            "--out", str(tmp_path / "run"), "--array", "8x16",
            config={"backend": {"options": {"min_width_s": 1e-9}}},
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "v2" in err and "bias none" in err and "nothing was sent" in err
    assert station.log == []
    assert not (tmp_path / "run").exists()


def test_pulses_shorter_than_the_station_fires_are_refused_before_the_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "stream.txt"
    code = train(
        tmp_path, "--protocol", str(LIBRARY / "taox_hfox.yaml"), "--backend", "visa",
        "--dry-run", str(stream), "--out", str(tmp_path / "run"),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "shortest pulse" in err and "at least 5e-05 s" in err
    assert not (tmp_path / "run").exists()
    assert visa_stream(stream.read_text()).pulses == [] if stream.exists() else True


# -- refusals that look like success ----------------------------------------------------------
#: One pulse per device per run: the first update spends it, the others are refused.
BUDGET_OF_ONE = {
    "limits": {"max_pulses_per_device_per_run": 1},
    "programming": {"method": "none"},
    "stuck": {"detect": False},
}


def test_a_run_whose_updates_are_refused_by_a_limit_ends_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Updates refused by the per-run pulse budget once ended as exit 0, 'complete'."""
    out = tmp_path / "run"
    code = train(tmp_path, "--epochs", "4", "--out", str(out), config=BUDGET_OF_ONE)
    captured = capsys.readouterr()
    assert code == 4, captured.err
    assert "run refused" in captured.err and "max_pulses_per_device_per_run=1" in captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "refused"
    assert report["totals"]["refused_by_limit"] > 0.1 * report["totals"]["presentations"]


def test_the_refused_share_is_configurable(tmp_path: Path) -> None:
    config = {**BUDGET_OF_ONE, "loop": {"max_limit_refused_share": 1.0}}
    out = tmp_path / "run"
    assert train(tmp_path, "--epochs", "4", "--out", str(out), config=config) == 0
    assert json.loads((out / "report.json").read_text())["totals"]["refused_by_limit"] > 0


def test_train_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    assert "4  completed, but more than loop.max_limit_refused_share" in out


# -- characterize resolves the same envelope --------------------------------------------------
def test_characterize_reads_at_the_protocols_read_voltage(tmp_path: Path) -> None:
    protocol = low_voltage_protocol(tmp_path)
    data = yaml.safe_load(protocol.read_text())
    data["characterize"].update(pulses_per_phase=4, cycles=1, devices=2, repeat_reads=2)
    protocol.write_text(yaml.safe_dump(data))
    stream = tmp_path / "stream.txt"
    args = ["characterize", str(protocol), "--backend", "visa", "--dry-run", str(stream)]
    main([*args, "--out", str(tmp_path / "out"), "--quiet"])  # the verdict is not the point
    seen = visa_stream(stream.read_text())
    assert seen.pulses and seen.reads and set(seen.reads) == {0.05}


def test_characterize_refuses_pulses_the_station_cannot_fire_before_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "stream.txt"
    args = ["characterize", str(LIBRARY / "epiram.yaml"), "--backend", "visa"]
    code = main([*args, "--dry-run", str(stream), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert "shortest pulse" in capsys.readouterr().err
    assert visa_stream(stream.read_text()).pulses == []
