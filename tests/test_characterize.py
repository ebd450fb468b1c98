"""`characterize` recovers each simulator preset's parameters and feeds the planner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.optimize import minimize_scalar

from hil import cli
from hil.characterize.characterization import characterize, device_grid
from hil.insitu.programming import program
from protocols.errors import InputError
from protocols.fitted_response import load_fitted_response
from protocols.protocol_file import library_dir, load_protocol
from protocols.response import NeuroSimResponse, curve, nl_to_a
from protocols.schemes import plan_update
from protocols.spec import WriteVerifyScheme
from sim_backend.config import NeuroSimModel
from sim_backend.crossbar import SimulatedCrossbar
from sim_backend.fit import mean_response
from sim_backend.presets import PRESETS

PRESET_NAMES = sorted(PRESETS)


def _resolvable_label(label: float, states: int, sign: float) -> float:
    """The NL label of the part of a NeuroSim curve a measurement can resolve.

    A strongly saturating curve covers 99 % of its window long before its last pulse; the
    remaining pulses move it by less than 1 % and no noisy measurement can place them, so the
    label is defined, as for the simulator's fitted models, on the curve up to 99 % cover.
    Curves that reach 99 % within the last 10 % of their pulses keep their nominal label.
    """
    p = np.arange(states + 1) / states
    trace = curve(p, nl_to_a(sign * label))
    k99 = int(np.argmax(trace >= 0.99))
    if k99 >= states - max(3, 0.1 * k99):
        return label
    q = np.arange(k99 + 1) / k99
    target = trace[: k99 + 1] / trace[k99]

    def loss(x: float) -> float:
        return float(np.sum((curve(q, nl_to_a(sign * x)) - target) ** 2))

    return float(minimize_scalar(loss, bounds=(-9.0, 9.0), method="bounded").x)


def _reference(name: str) -> tuple[float, float, float, float]:
    """(NL LTP, NL LTD, on/off, C2C sigma) the measurement should recover."""
    cfg = PRESETS[name]
    model = cfg.model
    if isinstance(model, NeuroSimModel):
        nl_ltp = _resolvable_label(model.nl_ltp, round(model.states_ltp), 1.0)
        nl_ltd = _resolvable_label(model.nl_ltd, round(model.states_ltd), -1.0)
    else:  # soft bounds, VTEAM: the simulator's own NeuroSim fit of the noiseless curve
        resp = mean_response(cfg)
        nl_ltp, nl_ltd = resp.nl_ltp, resp.nl_ltd
    return nl_ltp, nl_ltd, cfg.g_max_s / cfg.g_min_s, cfg.c2c.sigma


def _drawn_bounds(name: str, seed: int, devices: int) -> tuple[np.ndarray, np.ndarray]:
    """G_min and G_max the simulator drew for the devices `characterize` measures: the first
    `devices` of a device_grid(devices) array of that preset and seed, row by row."""
    with SimulatedCrossbar(*device_grid(devices), preset=name, seed=seed) as array:
        lo, hi = array.device_bounds()
    return lo.reshape(-1)[:devices], hi.reshape(-1)[:devices]


def _nl_ok(measured: float, reference: float) -> bool:
    tol = 0.3 if abs(reference) < 1.5 else 0.2 * abs(reference)
    return abs(measured - reference) <= tol


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_characterize_recovers_the_preset(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = library_dir() / f"{name}.yaml"
    out = tmp_path / "out"
    code = cli.main(["characterize", str(path), "--out", str(out), "--quiet", "--seed", "1"])
    printed = capsys.readouterr().out
    assert code == 0, printed  # the shipped protocol passes its own acceptance spec
    assert "PASS" in printed and "FAIL" not in printed
    doc = json.loads((out / "characterization.json").read_text())
    for figure in ("traces.png", "histograms.png"):
        assert (out / figure).stat().st_size > 10_000
    metrics = doc["metrics"]
    nl_ltp, nl_ltd, _, c2c = _reference(name)
    assert _nl_ok(metrics["nl_ltp"], nl_ltp), (metrics["nl_ltp"], nl_ltp)
    assert _nl_ok(metrics["nl_ltd"], nl_ltd), (metrics["nl_ltd"], nl_ltd)
    # G against the devices the simulator drew, not the nominal preset (the median of 16-64
    # drawn devices lies up to 4 % from it). Measured by `python bench/characterize_errors.py`
    # (seeds 0-4, no read noise): the medians exact for every preset but soft_bounds (G_max
    # 0.15 % low: a device short of its ceiling), each device exact but in soft_bounds (1.1 %).
    lo, hi = _drawn_bounds(name, 1, doc["experiment"]["devices"])
    assert metrics["g_min_s"] == pytest.approx(np.median(lo), rel=0.005)
    assert metrics["g_max_s"] == pytest.approx(np.median(hi), rel=0.005)
    assert metrics["on_off"] == pytest.approx(np.median(hi) / np.median(lo), rel=0.005)
    per = doc["per_device"]
    np.testing.assert_allclose(per["g_min_s"], lo, rtol=0.03, atol=0)
    np.testing.assert_allclose(per["g_max_s"], hi, rtol=0.03, atol=0)
    if c2c > 0:
        # Same bench: C2C within 1.2 % of the preset's at worst (pcmo, seed 2).
        assert abs(metrics["c2c_sigma"] / c2c - 1.0) <= 0.03, (metrics["c2c_sigma"], c2c)
    else:
        assert metrics["c2c_sigma"] < 1e-6
    assert metrics["stuck_fraction"] == 0.0
    # The fitted model is stored and loads as a planner's response model.
    fitted = load_fitted_response(out)
    assert fitted.nl_ltp == pytest.approx(metrics["nl_ltp"])
    assert fitted.g_max_s == pytest.approx(metrics["g_max_s"])


def test_the_reference_differs_from_the_label_only_for_strong_saturation() -> None:
    changed = {
        (name, d)
        for name in PRESET_NAMES
        if isinstance(PRESETS[name].model, NeuroSimModel)
        for d, ref, nominal in (
            ("ltp", _reference(name)[0], PRESETS[name].model.nl_ltp),
            ("ltd", _reference(name)[1], PRESETS[name].model.nl_ltd),
        )
        if ref != nominal
    }
    # Only the two LTD curves that saturate long before their last pulse.
    assert changed == {("ag_asi", "ltd"), ("pcmo", "ltd")}


#: C2C bound with 2 % read noise, per preset: about twice the worst error that
#: `python bench/characterize_errors.py --read-sigma 0.02` measured over seeds 0-4 (ag_asi
#: 1.9 %, alox_hfo2 3.3 %, epiram 2.2 %, taox_hfox 1.6 %, vteam 2.9 %). Left in the C2C
#: figure, the read noise adds 9-36 % here (seed 4: alox_hfo2 9 %, ag_asi 10 %, taox_hfox
#: 11 %, epiram 29 %, vteam 36 %). pcmo and soft_bounds are left out: their C2C noise (0.005
#: and 0.004 of the range per pulse) is a fraction of one read's noise and is lost in it
#: (errors up to 83 % and 121 % over the same seeds).
READ_NOISE_C2C_TOLERANCE = {
    "ag_asi": 0.04,
    "alox_hfo2": 0.07,
    "epiram": 0.05,
    "taox_hfox": 0.04,
    "vteam": 0.06,
}


@pytest.mark.parametrize("name", sorted(READ_NOISE_C2C_TOLERANCE))
def test_read_noise_is_measured_and_kept_out_of_the_curve_and_the_c2c_figure(name: str) -> None:
    protocol = load_protocol(library_dir() / f"{name}.yaml")
    k = protocol.characterize.devices
    with SimulatedCrossbar(
        *device_grid(k),
        preset=name,
        seed=4,
        limits=protocol.limits,
        readout={"read_sigma": 0.02},
    ) as array:
        _, result = characterize(array, protocol)
    m = result.metrics
    nl_ltp, nl_ltd, _, c2c = _reference(name)
    # Same bench, seeds 0-4: read noise within 2.6 %, each median G within 2.2 % of the
    # drawn devices' and on/off within 3.8 % (reads near the floor and the ceiling widen
    # the window a little).
    assert abs(m["read_noise"] / 0.02 - 1.0) <= 0.05, m["read_noise"]
    assert _nl_ok(m["nl_ltp"], nl_ltp) and _nl_ok(m["nl_ltd"], nl_ltd), (m["nl_ltp"], m["nl_ltd"])
    lo, hi = _drawn_bounds(name, 4, k)
    assert m["g_min_s"] == pytest.approx(np.median(lo), rel=0.05)
    assert m["g_max_s"] == pytest.approx(np.median(hi), rel=0.05)
    assert m["on_off"] == pytest.approx(np.median(hi) / np.median(lo), rel=0.08)
    tol = READ_NOISE_C2C_TOLERANCE[name]
    assert abs(m["c2c_sigma"] / c2c - 1.0) <= tol, (m["c2c_sigma"], c2c, tol)


def test_stuck_devices_are_found_and_left_out() -> None:
    protocol = load_protocol(library_dir() / "epiram.yaml")
    with SimulatedCrossbar(
        4, 8, preset="epiram", seed=5, limits=protocol.limits, faults={"stuck_min_rate": 0.25}
    ) as array:
        truth = array.stuck_mask.reshape(-1)[:32]
        lo, hi = (b.reshape(-1)[:32][~truth] for b in array.device_bounds())
        _, result = characterize(array, protocol, devices=32, cycles=4)
    assert truth.any()
    assert result.stuck == [int(i) for i in np.flatnonzero(truth)]
    assert result.metrics["stuck_fraction"] == pytest.approx(truth.mean())
    # The window is that of the working devices as drawn: without read noise the floor and
    # the ceiling are read exactly (bench/characterize_errors.py: 0.00 % for epiram).
    assert result.metrics["g_min_s"] == pytest.approx(np.median(lo), rel=1e-9)
    assert result.metrics["g_max_s"] == pytest.approx(np.median(hi), rel=1e-9)


def test_the_fitted_model_drives_write_verify_on_a_fresh_array(tmp_path: Path) -> None:
    path = library_dir() / "pcmo.yaml"
    assert cli.main(["characterize", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    fitted = load_fitted_response(tmp_path / "characterization.json")
    protocol = load_protocol(path)
    with SimulatedCrossbar(3, 3, preset="pcmo", seed=9, limits=protocol.limits) as array:
        span = fitted.g_max_s - fitted.g_min_s
        targets = fitted.g_min_s + span * np.linspace(0.2, 0.8, 9).reshape(3, 3)
        scheme = WriteVerifyScheme(kind="write_verify", tolerance_frac=0.03, max_iterations=80)
        result = program(array, targets, scheme=scheme, pulses=protocol.pulses, response=fitted)
        assert result.status == "converged"
        assert np.all(np.abs(array.read() - targets) <= result.tolerance_s)
        plan = plan_update(
            protocol.scheme,
            np.full((3, 3), 0.05 * span),
            array.read(),
            fitted,
            protocol.pulses,
            protocol.limits,
            rng=np.random.default_rng(0),
        )
        assert plan.signed_counts().min() >= 0 and plan.total_pulses > 0


def test_a_failing_metric_gives_fail_rows_and_exit_code_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load((library_dir() / "epiram.yaml").read_text())
    data["acceptance"]["on_off"] = {"min": 100.0, "max": 200.0}
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    code = cli.main(
        ["characterize", str(path), "--out", str(out), "--quiet", "--devices", "8", "--cycles", "2"]
    )
    printed = capsys.readouterr().out
    assert code == 1
    row = next(line for line in printed.splitlines() if line.startswith("on_off"))
    assert "FAIL" in row and "below min 100" in row
    doc = json.loads((out / "characterization.json").read_text())
    assert doc["passed"] is False
    assert doc["experiment"]["devices"] == 8 and doc["experiment"]["cycles"] == 2


def test_bad_characterize_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(library_dir() / "ideal.yaml")
    out = str(tmp_path / "out")
    assert cli.main(["characterize", path, "--out", out, "--preset", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown device preset 'nope'" in err[0]
    data = yaml.safe_load(Path(path).read_text())
    del data["preset"]
    anonymous = tmp_path / "anonymous.yaml"
    anonymous.write_text(yaml.safe_dump(data))
    assert cli.main(["characterize", str(anonymous), "--out", out, "--quiet"]) == 2
    assert "--preset" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert cli.main(["characterize", path, "--out", str(a_file), "--quiet"]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["characterize", path, "--out", out, "--devices", "0"])
    assert info.value.code == 2
    capsys.readouterr()
    no_port = str(tmp_path / "no-port")
    args = ["characterize", path, "--out", out, "--backend", "serial", "--port", no_port]
    assert cli.main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot open {no_port}" in err[0]
    assert not Path(out).exists()


def _taox_with(tmp_path: Path, limits: dict[str, float], g_max_top: float | None) -> Path:
    data = yaml.safe_load((library_dir() / "taox_hfox.yaml").read_text())
    data["limits"].update(limits)
    if g_max_top is None:
        del data["acceptance"]["g_max_s"]
    else:
        data["acceptance"]["g_max_s"]["max"] = g_max_top
    path = tmp_path / "taox.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_experiment_over_the_run_budget_is_refused_before_its_first_pulse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 170 RESET + 3 x (170 SET + 170 RESET) = 1190 pulses per device.
    path = _taox_with(tmp_path, {"max_pulses_per_device_per_run": 1000}, 1.15e-5)
    protocol = load_protocol(path)
    with SimulatedCrossbar(2, 2, preset="taox_hfox", seed=1, limits=protocol.limits) as array:
        with pytest.raises(InputError, match=r"1190 pulses.*max_pulses_per_device_per_run=1000"):
            characterize(array, protocol, devices=4, cycles=3)
        assert not array.pulse_counts.any()
    out = tmp_path / "out"
    args = ["characterize", str(path), "--out", str(out), "--devices", "4", "--cycles", "3"]
    assert cli.main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_pulses_per_device_per_run" in err[0]
    assert not out.exists()


def test_compliance_is_checked_at_the_highest_expected_conductance_before_any_pulse(
    tmp_path: Path,
) -> None:
    # 1.6 V at the accepted G_max of 1.15e-5 S draws 18.4 uA (16 uA at the preset's 1e-5 S);
    # the devices start near 1 uS.
    protocol = load_protocol(_taox_with(tmp_path, {"compliance_a": 1.7e-5}, 1.15e-5))
    with SimulatedCrossbar(2, 2, preset="taox_hfox", seed=1, limits=protocol.limits) as array:
        with pytest.raises(InputError, match=r"1.15e-05 S.*compliance_a=1.7e-05"):
            characterize(array, protocol, devices=4, cycles=1)
        assert not array.pulse_counts.any()


def test_each_pulse_is_checked_at_the_latest_read(tmp_path: Path) -> None:
    # Device-to-device spread takes some devices above the nominal 1e-5 S; 1.6 V at 1.05e-5 S
    # is the compliance, so the train must stop at the first read above it.
    protocol = load_protocol(_taox_with(tmp_path, {"compliance_a": 1.68e-5}, None))
    with SimulatedCrossbar(2, 2, preset="taox_hfox", seed=0, limits=protocol.limits) as array:
        with pytest.raises(InputError, match=r"would draw .* over compliance_a=1.68e-05"):
            characterize(array, protocol, devices=4, cycles=2)
        assert array.pulse_counts.any()


def test_load_fitted_response_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "characterization.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="JSON syntax error"):
        load_fitted_response(bad)
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match=r"not a characterization\.json"):
        load_fitted_response(tmp_path)
    good = NeuroSimResponse(
        g_min_s=1e-6, g_max_s=1e-5, states_ltp=10, states_ltd=10, nl_ltp=1.0, nl_ltd=-1.0
    )
    doc = {"format": "mrnn-hil characterization", "response": good.model_dump()}
    doc["response"]["g_max_s"] = -1.0
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="response"):
        load_fitted_response(bad)
