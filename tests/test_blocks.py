"""Commands address only real devices: a block inside the array's real shape.

`characterize` on an 8 x 16 VISA emulator used to open the station with its own 5 x 7 device
grid, which put bit lines on word-line relays, read 15 of 32 "devices" at 0 S and printed
PASS; `--devices 4 --cycles 2` crashed with ZeroDivisionError; no `--devices` value matched an
8 x 16 pulse board. Now the backend has the array's real shape (the board's own, the wiring
stated with --array), the command works on a block inside it, a block that leaves the array
or a device that reads as an open circuit stops the command before any verdict.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conformance import BackendConformance, Witness, array_witness, sim_witness

from drivers import open_backend
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_scpi import Station
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from hil import cli
from protocols.backend import CrossbarBackend
from protocols.block import Block, BlockView, parse_shape, view
from protocols.errors import InputError
from protocols.plan import PulseGroup, PulsePlan, PulseShape
from protocols.protocol_file import library_dir
from sim_backend import SimulatedCrossbar

AG = str(library_dir() / "ag_asi.yaml")  # 300 us pulses: what a B2900 can fire
PCMO = str(library_dir() / "pcmo.yaml")
METRICS_PCMO = [
    "g_min_s",
    "g_max_s",
    "on_off",
    "states_ltp",
    "distinguishable_states",
    "nl_ltp",
    "nl_ltd",
    "c2c_sigma",
    "stuck_fraction",
]


def _passed(printed: str, metrics: list[str]) -> None:
    """A report in which exactly `metrics` were judged and each passed: one PASS row per
    metric, the summary line PASS, no FAIL anywhere."""
    rows = {line.split()[0]: line for line in printed.splitlines() if line.endswith("range")}
    assert sorted(rows) == sorted(metrics), printed
    assert all(row.split()[-3] == "PASS" for row in rows.values()), printed
    n = len(metrics)
    assert f"PASS: {n}/{n} metrics within range" in printed and "FAIL" not in printed, printed


# -- the block and its view --------------------------------------------------------------
def test_block_spelling_and_its_errors() -> None:
    blk = Block.parse("2:4,3:7")
    assert (blk.row0, blk.rows, blk.col0, blk.cols) == (2, 2, 3, 4)
    assert str(blk) == "2:4,3:7" and blk.extent == (4, 7)
    assert parse_shape("8x16") == (8, 16)
    for bad in ("2:2,0:1", "0-3,0:1", "a:b,c:d", "1:2"):
        with pytest.raises(InputError, match="block"):
            Block.parse(bad)
    with pytest.raises(InputError, match="ROWSxCOLS"):
        parse_shape("8 by 16")
    with pytest.raises(InputError, match=r"reaches column 6, outside the array of 4x6"):
        Block.parse("0:2,3:7").check_inside((4, 6))


def test_a_view_touches_only_its_block() -> None:
    with SimulatedCrossbar(6, 8, preset="ideal", seed=3) as array:
        before = array.read()
        blk = Block.parse("2:4,3:7")
        v = view(array, blk)
        assert isinstance(v, BlockView) and v.shape == (2, 4)
        np.testing.assert_array_equal(v.read(), before[2:4, 3:7])
        np.testing.assert_array_equal(v.read(rows=[1], cols=[0, 3]), before[[3], :][:, [3, 6]])
        counts = np.full((2, 4), 3, dtype=np.int64)
        v.apply(
            PulsePlan.from_groups(
                (2, 4), [PulseGroup(PulseShape(amplitude_v=2.0, width_s=1e-8), counts)]
            )
        )
        after = array.read()
        inside = np.zeros((6, 8), dtype=bool)
        inside[2:4, 3:7] = True
        assert np.all(after[inside] > before[inside])
        np.testing.assert_array_equal(after[~inside], before[~inside])
        np.testing.assert_array_equal(array.pulse_counts[~inside], 0)
        with pytest.raises(IndexError):
            v.read(rows=[2])  # row 2 of the block would be row 4 of the array: not ours
        info = v.info()
        assert (info.rows, info.cols) == (2, 4)
        assert info.details["block"] == "2:4,3:7" and info.details["array"] == "6x8"
        assert view(array, Block.parse("0:6,0:8")) is array  # the whole array: no view


class TestBlockOfTheSimulator(BackendConformance):
    @pytest.fixture
    def backend(self) -> Iterator[CrossbarBackend]:
        with open_backend("sim", rows=3, cols=4, array="5x7", block="1:4,2:6", preset="ideal") as b:
            assert isinstance(b, BlockView)
            yield b

    @pytest.fixture
    def witness(self, backend: BlockView) -> Witness:
        """The whole simulated array behind the view: the block's devices, and nothing
        outside the block may move."""
        array: Any = backend.inner
        whole = sim_witness(array)
        return Witness(lambda: array.conductances()[1:4, 2:6], log=whole.log, preset="ideal")


class TestBlockOfThePulseBoard(BackendConformance):
    exact_resume = False

    @pytest.fixture
    def backend(self) -> Iterator[CrossbarBackend]:
        core = BoardCore(make_array(5, 7, preset="ideal", seed=2))
        with (
            SerialEmulator(core) as emu,
            open_backend("serial", emu.path, 3, 4, block="2:5,3:7") as be,
        ):
            assert be.info().details["array"] == "5x7"
            assert callable(getattr(be, "delivery_ticket", None))  # exactly-once stays
            self.board = core
            yield be

    @pytest.fixture
    def witness(self, backend: CrossbarBackend) -> Witness:
        core = self.board
        return array_witness(
            core.array,
            block=(slice(2, 5), slice(3, 7)),
            log=lambda: (core.log.entries, dict(core.commands)),
        )


# -- characterize on the instruments ------------------------------------------------------
@pytest.fixture
def station() -> Iterator[tuple[Station, ScpiEmulator]]:
    st = Station(make_array(8, 16, preset="ag_asi", seed=4))
    with ScpiEmulator(st) as emu:
        yield st, emu


def visa_args(emu: ScpiEmulator) -> list[str]:
    return [
        "--backend", "visa", "--resource", emu.smu_resource,
        "--matrix-resource", emu.matrix_resource,
    ]  # fmt: skip


def test_characterize_on_the_visa_station_uses_real_devices(
    station: tuple[Station, ScpiEmulator], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    st, emu = station
    out = tmp_path / "out"
    data = yaml.safe_load(Path(AG).read_text())
    # A short experiment (the wiring is the point): trains of 40 pulses end long before the
    # 97-state LTP curve saturates, so the curve, the states, G_max and C2C are not what it
    # can judge (with seeds 0-7 of the station they pass on some and fail on others). It is
    # judged on what it measures for certain: the floor and the stuck devices.
    data["characterize"]["pulses_per_phase"] = 40
    data["acceptance"] = {k: data["acceptance"][k] for k in ("g_min_s", "stuck_fraction")}
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump(data))
    args = ["characterize", str(short), "--out", str(out), "--quiet", "--devices", "4"]
    args += ["--cycles", "2"]
    code = cli.main([*args, *visa_args(emu), "--array", "8x16"])
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    _passed(printed.out, ["g_min_s", "stuck_fraction"])
    doc = json.loads((out / "characterization.json").read_text())
    assert doc["backend"]["array"] == "8x16" and doc["backend"]["block"] == "0:2,0:2"
    assert doc["metrics"]["g_min_s"] > 0 and doc["metrics"]["on_off"] > 1
    # Every pulse crossed one word line (A, columns 1-8) and one bit line (B, columns 9-24).
    assert {(t.row, t.col) for t in st.log} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_characterize_on_the_visa_station_needs_the_wiring(
    station: tuple[Station, ScpiEmulator], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    st, emu = station
    args = ["characterize", AG, "--out", str(tmp_path / "out"), "--quiet", "--devices", "4"]
    assert cli.main([*args, *visa_args(emu)]) == 2
    assert "needs --array" in capsys.readouterr().err
    assert not st.log


def test_a_wrong_wiring_reads_open_circuits_and_gives_no_verdict(
    station: tuple[Station, ScpiEmulator], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    st, emu = station
    out = tmp_path / "out"
    # Told 5 x 7, the driver puts bit lines on matrix columns 6-12: word lines of the real
    # 8 x 16 array. No device sits between two word lines; the emulator reads 0 S.
    args = ["characterize", AG, "--out", str(out), "--quiet", "--devices", "32"]
    assert cli.main([*args, *visa_args(emu), "--array", "5x7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "open circuit" in err[0] and "No verdict" in err[0], err
    assert not st.log  # stopped before the first pulse
    assert not (out / "characterization.json").exists()


def test_a_block_outside_the_array_is_refused_before_anything_is_sent(
    station: tuple[Station, ScpiEmulator], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    st, emu = station
    args = ["characterize", AG, "--out", str(tmp_path / "out"), "--quiet"]
    assert cli.main([*args, *visa_args(emu), "--array", "8x16", "--block", "6:9,0:4"]) == 2
    assert "reaches row 8, outside the array" in capsys.readouterr().err
    assert not st.log


def test_characterize_on_a_larger_pulse_board_uses_a_block_inside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pcmo: 70-pulse trains, short enough for 2 cycles of 6 devices to judge every metric;
    # all 9 pass (so they do with the board's seeds 0-6).
    core = BoardCore(make_array(8, 16, preset="pcmo", seed=4))
    out = tmp_path / "out"
    with SerialEmulator(core) as emu:
        args = ["characterize", PCMO, "--out", str(out), "--quiet", "--cycles", "2"]
        code = cli.main([*args, "--backend", "serial", "--port", emu.path, "--block", "5:7,10:13"])
        printed = capsys.readouterr()
        assert code == 0, printed.out + printed.err
        _passed(printed.out, METRICS_PCMO)
        bad = ["--backend", "serial", "--port", emu.path, "--block", "0:9,0:2"]
        assert cli.main([*args, *bad]) == 2
        assert "outside the board's array" in capsys.readouterr().err
    counts = core.array.pulse_counts
    assert counts[5:7, 10:13].min() > 0  # all six devices of the block, and nothing else
    counts[5:7, 10:13] = 0
    assert not counts.any()
    doc = json.loads((out / "characterization.json").read_text())
    assert doc["experiment"]["devices"] == 6 and doc["backend"]["block"] == "5:7,10:13"
    assert doc["passed"] is True


def test_train_on_a_block_of_a_larger_array(tmp_path: Path) -> None:
    patterns = tmp_path / "two.txt"
    patterns.write_text("[a]\n#.#.\n#..#\n\n[b]\n.##.\n##..\n")  # 8 units: 8 x 16 devices
    core = BoardCore(make_array(10, 20, preset="ideal", seed=1))
    with SerialEmulator(core) as emu:
        base = ["train", "--backend", "serial", "--port", emu.path, "--patterns", str(patterns)]
        run = ["--epochs", "1", "--quiet", "--preset", "ideal"]
        assert cli.main([*base, *run, "--out", str(tmp_path / "r1"), "--block", "2:10,4:20"]) == 0
        counts = core.array.pulse_counts
        assert counts[2:10, 4:20].sum() > 0
        counts[2:10, 4:20] = 0
        assert not counts.any()  # nothing outside the block
        # A block of the wrong size is refused before the run directory is made.
        assert cli.main([*base, *run, "--out", str(tmp_path / "r2"), "--block", "0:8,0:8"]) == 2
        assert not (tmp_path / "r2").exists()
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert report["backend"]["details"]["block"] == "2:10,4:20"
