"""The ArC TWO backend against the in-process pyarc2 double (drivers/emu_arc2.py).

The double is checked against the real pyarc2 in tests/test_arc2_pyarc2_api.py. Here: the
channel mapping, the read orientation, pulse polarity and parallel delivery, what is refused
before anything is queued, the idle state after every operation, and a training run of the
32-unit task that ends with the simulator's conductances, using row-parallel pulses.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from drivers import open_backend
from drivers.arc2 import BIT_CHANNELS, WORD_CHANNELS
from drivers.arc2_backend import Arc2Backend, nanos_of, output_range
from drivers.emu_arc2 import Arc2Board, IdleMode, Pyarc2Double
from drivers.emu_array import make_array
from hil.cli import main
from protocols.backend import BackendError
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulseGroup, PulsePlan, PulseShape
from sim_backend.readout import current_f32

G_RANGE = (2e-7, 1.3e-5)


def rig(rows: int = 3, cols: int = 4, **kw: object) -> tuple[Arc2Backend, Arc2Board]:
    board = Arc2Board(make_array(rows, cols, preset="epiram", seed=4))
    api = Pyarc2Double(board)
    inst = api.Instrument(0, "fw.bin")
    opts: dict = {"limits": SafetyLimits(), "g_range_s": G_RANGE, **kw}
    return Arc2Backend(inst, api, rows, cols, **opts), board


def plan(
    shape: tuple[int, int], counts: dict, amp: float = 2.0, width: float = 1e-7, **kw: object
) -> PulsePlan:
    c = np.zeros(shape, dtype=np.int64)
    for (r, col), n in counts.items():
        c[r, col] = n
    parallel = bool(kw.pop("parallel", False))
    group = PulseGroup(PulseShape(amplitude_v=amp, width_s=width), c, parallel=parallel)
    return PulsePlan.from_groups(shape, [group], **kw)  # type: ignore[arg-type]


def test_channel_mapping_bit_lines_are_rows_word_lines_columns() -> None:
    be, _ = rig(17, 18)
    info = be.info().details
    assert info["row_channels"][15:] == [15, 32]  # rows 15 and 16: bit channels 15, 32
    assert info["col_channels"][15:] == [31, 48, 49]  # columns 15..17: word channels 31, 48, 49
    assert BIT_CHANNELS[:16] == tuple(range(16)) and WORD_CHANNELS[16] == 48


def test_reads_are_currents_over_the_read_voltage_in_row_column_order() -> None:
    be, board = rig(8, 4, read_v=0.25)
    g_true = board.array.read()
    expected = np.abs(current_f32(g_true, 0.25).astype(np.float64)) / 0.25
    np.testing.assert_array_equal(be.read(), expected)  # read_all(BiasOrder.Cols)
    np.testing.assert_array_equal(be.read(rows=[2], cols=[1, 3]), expected[[2]][:, [1, 3]])
    names = [n for n, _ in board.calls]
    assert names.count("read_all") == 1 and names.count("read_slice") == 1
    # the other bias order returns the array the other way round: the backend must not use it
    inst = be.inst
    raw = inst.read_all(vread=0.25, order=Pyarc2Double.BiasOrder.Rows)
    assert not np.array_equal(raw[:8, :4], current_f32(g_true, 0.25))


def test_single_pulses_carry_the_plans_polarity() -> None:
    be, board = rig()
    be.apply(plan((3, 4), {(1, 2): 2}, amp=2.0))
    be.apply(plan((3, 4), {(0, 3): 1}, amp=-1.5, width=2e-7))
    calls = [kw for name, kw in board.calls if name == "pulse_one"]
    assert calls[0] == {"low": 1, "high": 18, "voltage": 2.0, "nanos": 100}
    assert calls[2] == {"low": 0, "high": 19, "voltage": -1.5, "nanos": 200}
    assert [(p.row, p.col, p.amplitude_v, p.width_s) for p in board.pulses] == [
        (1, 2, 2.0, 1e-7),
        (1, 2, 2.0, 1e-7),
        (0, 3, -1.5, 2e-7),
    ]


@pytest.mark.parametrize("orientation", ["rows", "cols"])
def test_parallel_groups_go_as_masked_slices_with_the_right_polarity(orientation: str) -> None:
    be, board = rig(parallel=orientation)
    counts = {(r, c): 3 for r in (0, 2) for c in (1, 2, 3)}
    be.apply(plan((3, 4), counts, amp=-2.0, parallel=True))
    slices = [kw for name, kw in board.calls if name == "pulse_slice_masked"]
    if orientation == "rows":  # the row's bit channel low: the device sees +voltage
        assert len(slices) == 2 * 3
        assert slices[0]["chan"] == 0 and slices[0]["voltage"] == -2.0
        assert slices[0]["mask"].tolist() == [17, 18, 19]
    else:  # the column's word channel low: the device sees -voltage, so +2 V is sent
        assert len(slices) == 3 * 3
        assert slices[0]["chan"] == 17 and slices[0]["voltage"] == 2.0
        assert slices[0]["mask"].tolist() == [0, 2]
    assert {p.amplitude_v for p in board.pulses} == {-2.0}
    assert board.pulse_counts()[:3, :4].tolist() == [[0, 3, 3, 3], [0, 0, 0, 0], [0, 3, 3, 3]]
    assert "pulse_one" not in [n for n, _ in board.calls]


def test_an_outer_product_phase_costs_lines_not_devices() -> None:
    be, board = rig(8, 12)
    counts = {(r, c): 4 for r in range(0, 8, 2) for c in range(12)}  # 4 rows x 12 columns
    be.apply(plan((8, 12), counts, parallel=True))
    ops = sum(1 for n, _ in board.calls if n == "pulse_slice_masked")
    assert ops == 4 * 4  # n x min(|R|, |C|) operations for 4 x 48 = 192 pulses
    assert len(board.pulses) == 192


@pytest.mark.parametrize(
    ("width", "bias", "limits", "match"),
    [
        (30e-9, "none", SafetyLimits(), "40 ns"),
        (45e-9, "none", SafetyLimits(), "10 ns timing grid"),
        (0.6, "none", SafetyLimits(max_width_s=1.0), "under 0.5 s"),
        (1e-7, "v3", SafetyLimits(), "V/3 biasing"),
        (1e-7, "none", SafetyLimits(max_half_select_v=0.9), "see 1 V, over max_half_select_v"),
    ],
)
def test_what_the_board_cannot_do_is_refused_before_anything_is_queued(
    width: float, bias: str, limits: SafetyLimits, match: str
) -> None:
    be, board = rig(limits=limits)
    before = len(board.calls)
    with pytest.raises(InputError, match=match) as err:
        be.apply(plan((3, 4), {(0, 0): 1}, width=width, bias=bias))
    assert isinstance(err.value, InputError | LimitViolation)
    assert len(board.calls) == before and board.pulses == []


def test_the_output_range_comes_from_the_limits() -> None:
    assert output_range(SafetyLimits(), 0.2) == "STD"
    assert output_range(SafetyLimits(max_set_v=25.0), 0.2) == "EXT"
    with pytest.raises(InputError, match="extended range swings"):
        output_range(SafetyLimits(max_reset_v=45.0), 0.2)
    be, board = rig(limits=SafetyLimits(max_set_v=25.0))
    rng = [kw for name, kw in board.calls if name == "set_channel_range"]
    assert rng[0]["chans"].tolist() == list(range(64)) and rng[0]["rng"].name == "EXT"
    be.apply(plan((3, 4), {(0, 0): 1}, amp=24.0))  # 12 V on each end: fits +-20 V
    assert board.pulses[0].amplitude_v == 24.0
    assert nanos_of(1e-7) == 100 and nanos_of(4e-8) == 40


def test_every_operation_ends_idle_and_close_floats_the_channels() -> None:
    be, board = rig(idle="hard_gnd")
    be.read()
    be.apply(plan((3, 4), {(0, 0): 1, (1, 1): 2}))
    names = [n for n, _ in board.calls]
    # after the setup, after the read, after the one pulse group
    assert names.count("finalise_operation") == 3
    assert names[-2:] == ["finalise_operation", "wait"]
    assert board.idle is IdleMode.HardGnd
    be.close()
    assert board.calls[-1] == ("finalise_operation", {"mode": IdleMode.Float, "control": None})
    assert board.idle is IdleMode.Float


def test_a_pyarc2_error_mid_plan_is_never_sent_again() -> None:
    be, _ = rig()
    real = be.inst.pulse_one
    sent: list[int] = []

    def failing(**kw: object) -> object:
        if sent:
            raise Pyarc2Double.ArC2Error("HS Channel pulse width too long")
        sent.append(1)
        return real(**kw)

    be.inst.pulse_one = failing  # type: ignore[method-assign]
    with pytest.raises(BackendError, match="cannot say which of them ran: nothing is sent again"):
        be.apply(plan((3, 4), {(0, 0): 3}))
    assert len(sent) == 1 and be.pulse_counts.sum() == 0


def test_opening_needs_pyarc2_a_firmware_file_and_one_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarc2", None)  # not installed
    with pytest.raises(InputError, match=r"pip install 'mrnn-hil\[arc2\]'"):
        open_backend("arc2", None, 2, 2, firmware="fw.bin")
    board = Arc2Board(make_array(2, 2), ids=())
    monkeypatch.setitem(sys.modules, "pyarc2", Pyarc2Double(board))
    with pytest.raises(InputError, match="firmware file"):
        open_backend("arc2", None, 2, 2, firmware=str(tmp_path / "missing.bin"))
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\0")
    with pytest.raises(BackendError, match="no board found"):
        open_backend("arc2", None, 2, 2, firmware=str(fw))
    board.ids = [0, 1]
    with pytest.raises(BackendError, match=r"2 boards found \(\[0, 1\]\); name one with --port"):
        open_backend("arc2", None, 2, 2, firmware=str(fw))
    with open_backend("arc2", "1", 2, 2, firmware=str(fw)) as be:
        assert be.info().name == "ArC TWO 1"
    assert ("Instrument", {"port": 1, "firmware": str(fw), "init": True}) in board.calls


SEED = 3
QUICK = (
    "evaluation: {samples: 5, curve_samples: 2}\nrun: {figures: false}\n"
    # EpiRAM's +5 V / -3 V pulses: the room the simulator gives them, stated for the board
    "limits: {max_set_v: 7.5, max_reset_v: 4.5, allow_raise: [max_set_v, max_reset_v]}\n"
)


def train(out: Path, *extra: str) -> int:
    return main(
        ["train", "--task", "glyphs32", "--scheme", "outer_product", "--epochs", "1",
         "--seed", str(SEED), "--quiet", "--out", str(out), *extra]
    )  # fmt: skip


def final(out: Path) -> np.ndarray:
    with np.load(out / "final.npz") as f:
        return np.asarray(f["conductance_s"])


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sim")
    cfg = tmp / "sim.yaml"
    cfg.write_text(
        "backend:\n  options:\n    readout__format: float32_current\n"
        "    readout__format_read_v: 0.1\n" + QUICK
    )
    assert train(tmp / "run", "--config", str(cfg)) == 0
    return tmp / "run"


@pytest.mark.slow
def test_train_32_units_on_the_double_equals_the_simulator_with_row_parallel_pulses(
    tmp_path: Path, sim_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = Arc2Board(make_array(32, 31, preset="epiram", seed=SEED))
    monkeypatch.setitem(sys.modules, "pyarc2", Pyarc2Double(board))
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\0")
    cfg = tmp_path / "q.yaml"
    cfg.write_text(QUICK)
    out = tmp_path / "run"
    assert train(out, "--backend", "arc2", "--firmware", str(fw), "--config", str(cfg)) == 0
    np.testing.assert_array_equal(final(out), final(sim_run))
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"] == json.loads((sim_run / "report.json").read_text())["accuracy"]
    calls = Counter(n for n, _ in board.calls)
    assert calls["pulse_slice_masked"] > 0  # the outer-product updates, row/column-parallel
    assert calls["read_all"] == report["totals"]["reads"]
    assert len(board.pulses) == report["totals"]["pulses"]
    assert board.idle is IdleMode.Float  # closed: channels grounded and disconnected


def test_a_dry_run_writes_the_pyarc2_calls_and_opens_nothing(
    tmp_path: Path, sim_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarc2", None)  # the dry run needs no pyarc2 at all
    stream = tmp_path / "stream.txt"
    cfg = tmp_path / "q.yaml"
    cfg.write_text(QUICK)
    assert train(tmp_path / "run", "--backend", "arc2", "--dry-run", str(stream),
                 "--config", str(cfg)) == 0  # fmt: skip
    lines = stream.read_text().splitlines()
    assert lines[0] == "# mrnn-hil dry run, ArC TWO board (first found)"
    body = [line for line in lines if not line.startswith("#")]
    assert body[:3] == [
        "arc2 > find_ids()",
        "arc2 > Instrument(port=0, firmware='(firmware)', init=True)",
        "arc2 > set_channel_range(chans=["
        + ", ".join(map(str, range(64)))
        + "], rng=OutputRange.STD)",
    ]
    assert any(line.startswith("arc2 > pulse_slice_masked(chan=") for line in body)
    assert any(line.startswith("arc2 < read_all -> f32[32x32] ") for line in body)
    assert body[-1] == "arc2 > finalise_operation(mode=IdleMode.Float, control=None)"
    np.testing.assert_array_equal(final(tmp_path / "run"), final(sim_run))
