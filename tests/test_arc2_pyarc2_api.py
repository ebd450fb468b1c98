"""The ArC TWO backend against the REAL pyarc2 package (installed from PyPI by the test extra).

pyarc2 cannot open an instrument without the board, so the backend is exercised on an
in-process double. This test keeps the double honest: every call the backend makes (method,
argument names, enum values) during a session that uses every path, and every name of the
double it relies on, must exist with that signature in the real package. The backend calls
pyarc2 by keyword, so a renamed argument would fail on the bench: here it fails first.
"""

from __future__ import annotations

import enum
import inspect
import types
from typing import Any

import numpy as np
import pyarc2
import pytest

from drivers import open_backend
from drivers.emu_arc2 import Arc2Board, EmulatedInstrument, Pyarc2Double, _Variant
from drivers.emu_array import make_array
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape

#: Enums the backend names: (pyarc2 attribute, member).
ENUMS = [
    ("BiasOrder", "Cols"),
    ("OutputRange", "STD"),
    ("OutputRange", "EXT"),
    ("IdleMode", "SoftGnd"),
    ("IdleMode", "HardGnd"),
    ("IdleMode", "Float"),
]


def session(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every pyarc2 call the backend makes on a session that takes every path."""
    board = Arc2Board(make_array(8, 6, preset="epiram", seed=1))
    monkeypatch.setitem(__import__("sys").modules, "pyarc2", Pyarc2Double(board))
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\0")
    limits = SafetyLimits(max_set_v=25.0)  # the extended range
    for idle, parallel in (("soft_gnd", "rows"), ("hard_gnd", "cols"), ("float", "auto")):
        with open_backend(
            "arc2", None, 8, 6, limits=limits, firmware=str(fw), idle=idle, parallel=parallel,
            chunk_ops=2,
        ) as be:  # fmt: skip
            be.read()
            be.read(rows=[1], cols=[2])
            counts = np.zeros((8, 6), dtype=np.int64)
            counts[1:4, 2:5] = 2
            shape = PulseShape(amplitude_v=2.0, width_s=1e-7)
            be.apply(PulsePlan.from_groups((8, 6), [PulseGroup(shape, counts, parallel=True)]))
            be.apply(PulsePlan.from_groups((8, 6), [PulseGroup(shape, counts)]))
    return board.calls


def api_mismatches(real: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Calls that the real pyarc2 would not accept as made (names, argument names, enums)."""
    problems: list[str] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for name, kwargs in calls:
        key = (name, tuple(sorted(kwargs)))
        if key in seen:
            continue
        seen.add(key)
        if name == "find_ids":
            target = getattr(real, "find_ids", None)
            args: tuple[Any, ...] = ()
        elif name == "Instrument":
            target = getattr(getattr(real, "Instrument", None), "__init__", None)
            args = (None,)
        else:
            target = getattr(getattr(real, "Instrument", None), name, None)
            args = (None,)
        if target is None:
            problems.append(f"pyarc2 has no {name}")
            continue
        try:
            inspect.signature(target).bind(*args, **kwargs)
        except TypeError as exc:
            problems.append(f"{name}({', '.join(kwargs)}): {exc}")
        for arg, value in kwargs.items():
            member = getattr(value, "name", None)
            owner = getattr(value, "owner", type(value).__name__)
            if isinstance(value, _Variant | enum.Enum) and not hasattr(
                getattr(real, owner, None), str(member)
            ):
                problems.append(f"{name}({arg}=...): pyarc2 has no {owner}.{member}")
    return problems


def test_every_call_the_backend_makes_exists_in_the_real_pyarc2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    calls = session(monkeypatch, tmp_path)
    used = {name for name, _ in calls}
    assert {"read_all", "read_slice", "pulse_one", "pulse_slice_masked", "set_channel_range",
            "execute", "wait", "finalise_operation", "Instrument", "find_ids"} <= used  # fmt: skip
    assert api_mismatches(pyarc2, calls) == []
    for owner, member in ENUMS:
        assert hasattr(getattr(pyarc2, owner), member), f"pyarc2.{owner}.{member}"
    assert issubclass(pyarc2.ArC2Error, Exception)


def test_the_double_has_the_real_signatures() -> None:
    for name, member in inspect.getmembers(EmulatedInstrument, inspect.isfunction):
        if name.startswith("_"):
            continue
        real = inspect.signature(getattr(pyarc2.Instrument, name))
        mine = inspect.signature(member)
        assert [p for p in mine.parameters if p != "self"] == [
            p for p in real.parameters if p != "self"
        ], name
    init = inspect.signature(EmulatedInstrument.__init__)
    real_init = inspect.signature(pyarc2.Instrument.__init__)
    assert list(init.parameters)[: len(real_init.parameters)] == list(real_init.parameters)
    assert set(pyarc2.IdleMode.__members__) == {m.name for m in Pyarc2Double.IdleMode}


def renamed(arg: str, to: str, method: str) -> Any:
    """A copy of pyarc2 whose Instrument.<method> calls its argument `arg` `to`."""
    original = getattr(pyarc2.Instrument, method)
    params = [
        p.replace(name=to) if p.name == arg else p
        for p in inspect.signature(original).parameters.values()
    ]

    def stand_in(*args: Any, **kwargs: Any) -> None: ...

    stand_in.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    instrument = type("Instrument", (), {method: stand_in, "__init__": pyarc2.Instrument.__init__})
    fake = types.SimpleNamespace(
        **{k: getattr(pyarc2, k) for k in dir(pyarc2) if not k.startswith("__")}
    )
    for k in dir(pyarc2.Instrument):
        if not k.startswith("__") and k != method:
            setattr(instrument, k, getattr(pyarc2.Instrument, k))
    fake.Instrument = instrument
    return fake


@pytest.mark.parametrize(
    ("method", "arg", "to"),
    [
        ("pulse_slice_masked", "mask", "highs"),
        ("read_all", "order", "bias"),
        ("finalise_operation", "mode", "idle"),
    ],
)
def test_a_renamed_argument_in_pyarc2_is_caught(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, method: str, arg: str, to: str
) -> None:
    calls = session(monkeypatch, tmp_path)
    problems = api_mismatches(renamed(arg, to, method), calls)
    assert problems and all(p.startswith(f"{method}(") for p in problems)
    # the call as the backend makes it, with the argument pyarc2 no longer has
    assert any(arg in p.split(":")[0] for p in problems), problems


def test_a_missing_enum_member_or_method_is_caught(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    calls = session(monkeypatch, tmp_path)
    fake = renamed("mask", "mask", "pulse_slice_masked")
    fake.BiasOrder = types.SimpleNamespace(Rows=pyarc2.BiasOrder.Rows)  # no Cols
    del fake.Instrument.read_slice
    problems = api_mismatches(fake, calls)
    assert "read_all(order=...): pyarc2 has no BiasOrder.Cols" in problems
    assert "pyarc2 has no read_slice" in problems
