"""A run's read voltage is checked against the whole envelope before anything is opened: below
the device's switching threshold (known from its preset) and the hard read ceiling, not only
below the protocol's programming amplitudes; `mrnn-hil validate` checks it against the file's
preset too. A station that knows no threshold of its own (VISA) has this check alone between
it and a disturbing read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.cli import main
from protocols.envelope import Envelope, resolve_envelope
from protocols.limits import HARD_MAX_READ_V, LimitViolation
from protocols.protocol_file import library_dir, load_protocol

#: AlOx/HfO2: +0.9 V / -1.0 V pulses, switching at 0.675 V: a read of 0.8 V stays below both
#: pulses and within the VISA station's 1 V read range, but moves the devices.
ALOX = library_dir() / "alox_hfo2.yaml"
ALOX_SWITCHING_V = 0.675


def envelope_of(path: Path, read_v: float, switching_v: float | None) -> Envelope:
    proto = load_protocol(path)
    return resolve_envelope(
        pulses=proto.pulses,
        base_limits=proto.limits.safety_limits(),
        scheme=proto.scheme,
        read_v=read_v,
        switching_v=switching_v,
    )


@pytest.mark.parametrize("read_v", [0.8, ALOX_SWITCHING_V])
def test_the_envelope_refuses_a_read_at_or_above_the_switching_threshold(read_v: float) -> None:
    wanted = (
        rf"read voltage {read_v:g} V could disturb the devices: a read must stay below the "
        rf"switching threshold {ALOX_SWITCHING_V:g} V"
    )
    with pytest.raises(LimitViolation, match=wanted):
        envelope_of(ALOX, read_v, ALOX_SWITCHING_V)
    assert envelope_of(ALOX, 0.6, ALOX_SWITCHING_V).read_v == 0.6


def test_the_envelope_refuses_a_read_above_the_hard_ceiling() -> None:
    """EpiRAM's pulses (+5 V / -3 V) would let a 2.5 V read through; the ceiling does not."""
    epiram = library_dir() / "epiram.yaml"
    proto = load_protocol(epiram)
    assert min(proto.pulses.set.amplitude_v, -proto.pulses.reset.amplitude_v) > 2.5
    with pytest.raises(LimitViolation, match=r"2\.5 V is above the hard read ceiling 2 V"):
        envelope_of(epiram, 2.5, None)
    assert envelope_of(epiram, HARD_MAX_READ_V, None).read_v == HARD_MAX_READ_V


def test_train_refuses_a_read_over_the_switching_threshold_before_opening_the_station(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protocol = tmp_path / "alox_read.yaml"
    text = ALOX.read_text()
    assert text.count("  voltage_v: 0.1\n") == 1
    protocol.write_text(text.replace("  voltage_v: 0.1\n", "  voltage_v: 0.8\n"))
    # validate names the preset's threshold too: the file's preset would be disturbed
    assert main(["validate", str(protocol)]) == 2
    err = capsys.readouterr().err
    assert "read.voltage_v 0.8 V could disturb the devices" in err, err
    assert f"switching threshold {ALOX_SWITCHING_V:g} V (of preset 'alox_hfo2')" in err, err
    assert main(["validate", str(ALOX)]) == 0  # the library file reads at 0.1 V
    capsys.readouterr()
    patterns = tmp_path / "two.txt"
    patterns.write_text("[a]\n#.\n.#\n\n[b]\n.#\n#.\n")
    stream, run = tmp_path / "stream.txt", tmp_path / "run"
    args = ["train", "--backend", "visa", "--dry-run", str(stream), "--protocol", str(protocol)]
    args += ["--patterns", str(patterns), "--epochs", "1", "--out", str(run), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"a read must stay below the switching threshold {ALOX_SWITCHING_V:g} V" in err, err
    assert not stream.exists() and not run.exists()  # nothing opened, nothing written
