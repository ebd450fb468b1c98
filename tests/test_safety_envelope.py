"""The one safety envelope, piece by piece: ceilings, the partial override and its opt-in,
the read-voltage rule of the backend contract, backend capabilities, the journal's digest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from drivers import open_backend
from hil.insitu.journal import Journal, changed_fields, digest_of
from protocols.backend import BackendInfo
from protocols.envelope import check_compatible, requirements, resolve_envelope
from protocols.errors import InputError
from protocols.limits import (
    HARD_CEILINGS,
    LIMIT_FIELDS,
    LimitsOverride,
    LimitViolation,
    SafetyLimits,
    cap_to_ceilings,
    check_read_voltage,
    merge_limits,
)
from protocols.protocol_file import library_dir, load_protocol
from protocols.spec import OuterProductScheme, ProportionalScheme, WriteVerifyScheme
from sim_backend import SimulatedCrossbar, default_limits, get_preset

TAOX = load_protocol(library_dir() / "taox_hfox.yaml")
BASE = SafetyLimits(max_half_select_v=0.9)


def override(**fields: object) -> LimitsOverride:
    return LimitsOverride.model_validate(fields)


# -- the override and its merge ----------------------------------------------------------------
def test_an_override_changes_only_the_fields_it_writes() -> None:
    merged = merge_limits(BASE, override(compliance_a=5e-4))
    assert merged.limits == BASE.model_copy(update={"compliance_a": 5e-4})
    assert [c.field for c in merged.tightened] == ["compliance_a"] and merged.raised == ()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_set_v": 4.0}, "max_set_v"),
        ({"max_pulses_per_device_per_update": 65}, "max_pulses_per_device_per_update"),
        ({"max_half_select_v": None}, "max_half_select_v"),  # switching a check off raises it
    ],
)
def test_raising_a_field_needs_allow_raise_naming_it(fields: dict, named: str) -> None:
    with pytest.raises(InputError, match=rf"allow_raise: \[{named}\]"):
        merge_limits(BASE, override(**fields), base_source="protocol p.yaml")
    merged = merge_limits(BASE, override(**fields, allow_raise=[named]))
    assert [c.field for c in merged.raised] == [named]


def test_setting_a_field_the_base_leaves_unchecked_tightens_it() -> None:
    merged = merge_limits(SafetyLimits(), override(max_half_select_v=1.0))
    assert merged.limits.max_half_select_v == 1.0 and merged.raised == ()


@pytest.mark.parametrize("name", sorted(HARD_CEILINGS))
def test_no_override_passes_a_hard_ceiling(name: str) -> None:
    ceiling = HARD_CEILINGS[name]
    over = int(ceiling) + 1 if isinstance(getattr(BASE, name) or 1, int) else ceiling * 1.01
    with pytest.raises(ValidationError, match="less than or equal to"):
        override(**{name: over, "allow_raise": [name]})


def test_a_base_above_the_ceilings_is_refused_and_defaults_are_capped() -> None:
    wild = SafetyLimits(max_set_v=50.0)
    with pytest.raises(InputError, match="max_set_v = 50 is above the hard ceiling 20"):
        merge_limits(wild, None, base_source="the defaults")
    assert cap_to_ceilings(wild).max_set_v == 20.0
    hot = get_preset("epiram").model_copy(
        update={"set_pulse": get_preset("epiram").set_pulse.model_copy(update={"amplitude_v": 18})}
    )
    assert default_limits(hot).max_set_v == 20.0  # 1.5 x 18 V, capped


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_set_v": None}, "may not be null"),
        ({"allow_raise": ["max_set_v"]}, "does not set it"),
        ({"max_set_v": 2.0, "allow_raise": ["max_volts"]}, "which is no limit"),
        ({"max_set_v": 2.0, "allow_raise": ["max_set_v", "max_set_v"]}, "twice"),
        ({"max_volts": 2.0}, "Extra inputs"),
    ],
)
def test_a_bad_override_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        override(**fields)


def test_the_override_dumps_what_was_written_and_the_pinned_one_reproduces_the_merge() -> None:
    partial = override(compliance_a=5e-4)
    assert partial.model_dump(mode="json") == {"compliance_a": 5e-4, "allow_raise": []}
    merged = merge_limits(BASE, override(max_set_v=4.0, allow_raise=["max_set_v"]))
    pinned = LimitsOverride.model_validate(merged.pinned().model_dump(mode="json"))
    assert set(pinned.values()) == set(LIMIT_FIELDS)
    assert merge_limits(BASE, pinned) == merged


# -- the envelope: pulses, scheme and read voltage against the effective limits ----------------
def envelope(**kw: object):  # type: ignore[no-untyped-def]
    args: dict = {
        "pulses": TAOX.pulses,
        "base_limits": TAOX.limits.safety_limits(),
        "scheme": TAOX.scheme,
        "read_v": TAOX.read.voltage_v,
        "switching_v": 1.2,
        "base_source": "protocol taox",
    }
    return resolve_envelope(**{**args, **kw})


def test_a_scheme_override_climbing_past_the_effective_limits_is_refused() -> None:
    ispp = WriteVerifyScheme(kind="write_verify", v_step_v=2.0, max_ispp_steps=10)
    with pytest.raises(InputError, match=r"ISPP reaches 22 V SET .* limits.max_set_v = 3 V"):
        envelope(scheme=ispp)
    raised = override(max_set_v=20.0, max_reset_v=20.0, allow_raise=["max_set_v", "max_reset_v"])
    with pytest.raises(InputError, match="ISPP reaches 22 V"):
        envelope(scheme=ispp, override=raised)


def test_a_bias_scheme_is_checked_against_the_merged_half_select_limit() -> None:
    base = TAOX.limits.safety_limits().model_copy(update={"max_half_select_v": 0.9})
    v2 = ProportionalScheme(kind="proportional", bias="v2")
    with pytest.raises(InputError, match="puts 1 V on half-selected devices"):
        envelope(base_limits=base, scheme=v2, override=override(compliance_a=5e-4))
    assert envelope(base_limits=base, scheme=v2.model_copy(update={"bias": "v3"})).read_v == 0.1


def test_the_read_voltage_may_only_be_lowered_by_an_option() -> None:
    assert envelope(read_override_v=0.05).read_v == 0.05
    with pytest.raises(InputError, match=r"read_v = 0\.2 V is above the read voltage"):
        envelope(read_override_v=0.2)


@pytest.mark.parametrize(
    ("read_v", "kw", "what"),
    [
        (0.5, {"switching_v": 0.5}, "switching threshold 0.5 V"),
        (1.0, {"nominal_v": 0.9}, "nominal programming amplitude 0.9 V"),
        (0.3, {}, "max_reset_v = 0.3 V"),
        (2.5, {}, "hard read ceiling"),
        (0.0, {}, "finite voltage > 0"),
        (float("nan"), {}, "finite voltage > 0"),
    ],
)
def test_a_read_that_could_disturb_the_devices_is_refused(
    read_v: float, kw: dict, what: str
) -> None:
    limits = SafetyLimits(max_set_v=3.0, max_reset_v=0.3 if "max_reset" in what else 3.0)
    with pytest.raises(LimitViolation, match=what):
        check_read_voltage(read_v, limits, **kw)
    check_read_voltage(0.1, limits, switching_v=0.5, nominal_v=0.9)


# -- the read voltage in the backend contract --------------------------------------------------
def test_the_simulator_refuses_a_disturbing_read_voltage_and_reports_its_own() -> None:
    with pytest.raises(LimitViolation, match=r"switching threshold 1\.2 V"):
        SimulatedCrossbar(2, 2, preset="epiram", read_v=1.5)
    with SimulatedCrossbar(2, 2, preset="epiram", read_v=0.2) as array:
        assert array.info().read_v == 0.2
        with pytest.raises(LimitViolation, match=r"max_set_v = 0\.5 V"):
            array.limits = SafetyLimits(max_set_v=0.5, max_reset_v=3.0)
            array.read_v = 0.6
        array.limits = SafetyLimits(max_set_v=0.15)
        with pytest.raises(LimitViolation):
            array.read()  # limits tightened below the read voltage: checked at every read
        with pytest.raises(LimitViolation, match="mvm input"):
            array.mvm(np.array([0.0, 0.2]))


@pytest.mark.parametrize("kind", ["visa", "serial"])
def test_an_instrument_refuses_a_disturbing_read_voltage_before_the_first_byte(
    tmp_path: Path, kind: str
) -> None:
    stream = tmp_path / "stream.txt"
    options = {"min_width_s": 1e-9} if kind == "visa" else {}
    limits = SafetyLimits(max_set_v=0.5, max_reset_v=0.5)
    with pytest.raises(LimitViolation, match=r"read voltage 0\.6 V"):
        open_backend(kind, None, 2, 3, dry_run=stream, limits=limits, read_v=0.6, **options)
    sent = [line for line in stream.read_text().splitlines() if " > " in line]
    assert sent == []
    again = tmp_path / "stream2.txt"  # a dry run never overwrites a file
    with open_backend(kind, None, 2, 3, dry_run=again, limits=limits, read_v=0.3, **options) as b:
        assert b.read_v == 0.3 and b.info().read_v == 0.3


# -- capabilities ---------------------------------------------------------------------------------
def info(**kw: object) -> BackendInfo:
    args: dict = {"name": "station", "kind": "visa", "rows": 2, "cols": 2}
    return BackendInfo(g_min_s=1e-6, g_max_s=1e-4, **{**args, **kw})


def test_a_bias_the_backend_cannot_do_is_named_with_what_would_work() -> None:
    env = envelope(scheme=OuterProductScheme(kind="outer_product", bias="v2"))
    with pytest.raises(InputError) as err:
        check_compatible(env, info())
    text = str(err.value)
    assert "biases unselected lines with v2" in text and "use a scheme with bias none" in text
    assert "outer_product scheme fires row/column-parallel phases" in text
    check_compatible(
        env, info(bias_schemes=("none", "v2", "v3"), supports_row_parallel=True)
    )  # the simulator's and the pulse board's capabilities


def test_widths_and_amplitudes_beyond_the_backend_are_named() -> None:
    ispp = WriteVerifyScheme(kind="write_verify", v_step_v=0.1, max_ispp_steps=5)
    env = envelope(scheme=ispp)
    need = requirements(env)
    assert need.max_set_v == pytest.approx(2.5) and need.bias == ("none",)
    with pytest.raises(InputError, match=r"at least 5e-05 s wide") as err:
        check_compatible(env, info(min_width_s=5e-5, max_abs_v=2.2))
    assert "may send 2.5 V" in str(err.value) and "to 2.2 V" in str(err.value)
    check_compatible(env, info(min_width_s=1e-9, max_abs_v=6.0, max_width_s=1.0))


def test_each_backend_declares_its_capabilities(tmp_path: Path) -> None:
    with SimulatedCrossbar(2, 2, preset="epiram") as sim:
        assert sim.info().bias_schemes == ("none", "v2", "v3")
    visa = open_backend("visa", None, 2, 3, dry_run=tmp_path / "v.txt", min_width_s=1e-6)
    serial = open_backend("serial", None, 2, 3, dry_run=tmp_path / "s.txt")
    with visa, serial:
        v, s = visa.info(), serial.info()
    assert v.bias_schemes == ("none",) and v.min_width_s == 1e-6 and not v.supports_row_parallel
    assert s.bias_schemes == ("none", "v2", "v3") and s.max_abs_v == 6.0


# -- the journal's digest of where a run came from ----------------------------------------------
def test_changed_fields_names_every_differing_path() -> None:
    old = {"limits": {"max_set_v": 3.0, "compliance_a": 1e-3}, "scheme": {"kind": "a"}, "x": 1}
    new = {"limits": {"max_set_v": 5.9, "compliance_a": 1e-3}, "scheme": {"kind": "b"}, "y": 1}
    assert changed_fields(old, new) == ["limits.max_set_v", "scheme.kind", "x", "y"]
    assert digest_of(old) == digest_of(dict(reversed(list(old.items()))))


def test_the_journal_names_what_changed_since_the_run_began(tmp_path: Path) -> None:
    text = (library_dir() / "taox_hfox.yaml").read_text()
    config = {"limits": {"max_set_v": 3.0}, "scheme": {"kind": "proportional"}}
    with Journal(tmp_path / "j.sqlite") as journal:
        assert not journal.has_origin()
        journal.record_origin(config, text)
    with Journal(tmp_path / "j.sqlite") as journal:
        assert journal.origin_changes(config, text) == []
        edited = {**config, "limits": {"max_set_v": 5.9}}
        assert journal.origin_changes(edited, text) == ["config fields changed: limits.max_set_v"]
        other = text.replace("max_set_v: 3.0", "max_set_v: 5.9")
        parse = lambda t: {"limits": {"max_set_v": 5.9 if "5.9" in t else 3.0}}  # noqa: E731
        (change,) = journal.origin_changes(config, other, parse)
        assert change == "the protocol file's content changed (limits.max_set_v)"
