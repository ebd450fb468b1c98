"""Each symmetric weight stored once: layout, round trip, updates, the 32-unit task and what
fits a 32 x 32 board."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hil.cli import main
from hil.insitu.mapping import (
    DifferentialMapping,
    SymmetricMapping,
    largest_network,
    make_mapping,
    mapping_shape,
    stuck_report,
    what_fits,
)
from hil.insitu.run_config import validate_config
from hil.insitu.tasks import task_config
from hil.network.patterns import builtin_set, patterns_from_spec
from protocols.errors import InputError
from sim_backend.readout import current_f32, resistance_f32

G_MIN, G_MAX = 1e-6, 11e-6


def test_every_device_of_the_n_by_n_minus_1_array_holds_one_pair_end() -> None:
    m = SymmetricMapping.from_range(32, G_MIN, G_MAX, w_max=1.0)
    assert m.shape == (32, 31) and m.pairs == 496
    cells = np.concatenate([m.plus_flat, m.minus_flat])
    assert np.array_equal(np.sort(cells), np.arange(32 * 31))  # all 992 used, none twice
    # W_ij (i < j): G+ at (i, j - 1), G- at (j, i)
    k = int(np.flatnonzero((m.pair_i == 3) & (m.pair_j == 7))[0])
    assert divmod(int(m.plus_flat[k]), 31) == (3, 6)
    assert divmod(int(m.minus_flat[k]), 31) == (7, 3)
    d = SymmetricMapping.from_range(5, G_MIN, G_MAX, w_max=1.0, diagonal=True)
    assert d.shape == (5, 6) and d.pairs == 15
    assert np.array_equal(np.sort(np.concatenate([d.plus_flat, d.minus_flat])), np.arange(30))


@pytest.mark.parametrize("diagonal", [False, True])
def test_targets_round_trip_to_the_symmetric_weights(diagonal: bool) -> None:
    m = SymmetricMapping.from_range(6, G_MIN, G_MAX, w_max=0.5, diagonal=diagonal)
    rng = np.random.default_rng(2)
    A = rng.uniform(-0.5, 0.5, (6, 6))
    W = 0.5 * (A + A.T)
    G = m.targets(W)
    assert G.min() >= G_MIN and G.max() <= G_MAX
    expected = W if diagonal else W - np.diag(np.diag(W))
    np.testing.assert_allclose(m.weights(G), expected, atol=1e-12)
    gp, gm = m.split(G)
    np.testing.assert_array_equal(m.join(gp, gm), G)
    assert np.array_equal(gp, gp.T) and np.array_equal(gm, gm.T)


def test_request_moves_each_pair_once_on_the_device_with_more_room() -> None:
    m = SymmetricMapping.from_range(4, G_MIN, G_MAX, w_max=1.0)
    rng = np.random.default_rng(3)
    G = m.targets(0.5 * (lambda a: a + a.T)(rng.uniform(-0.4, 0.4, (4, 4))))
    dW = 0.5 * (lambda a: a + a.T)(rng.uniform(-0.05, 0.05, (4, 4)))
    dG = m.request(dW, G)
    # off the diagonal the weight moves by exactly dW; the diagonal is not stored
    np.testing.assert_allclose(m.weights(G + dG) - m.weights(G), dW - np.diag(np.diag(dW)))
    # one device per pair moves
    moved = (dG.reshape(-1)[m.plus_flat] != 0) ^ (dG.reshape(-1)[m.minus_flat] != 0)
    assert moved.all()
    stuck = np.zeros(m.shape, dtype=bool)
    stuck.reshape(-1)[m.plus_flat[0]] = True
    stuck.reshape(-1)[m.minus_flat[0]] = True
    dG = m.request(dW, G, stuck)
    assert dG.reshape(-1)[m.plus_flat[0]] == dG.reshape(-1)[m.minus_flat[0]] == 0.0
    report = stuck_report(m, stuck, G)
    assert report["frozen_weights"] == 1 and report["stuck_devices"] == 2
    assert [d["weight"] for d in report["devices"]] == [[0, 1], [0, 1]]  # type: ignore[index]


def test_shapes_and_what_fits_a_board() -> None:
    assert mapping_shape(32, "symmetric", False) == (32, 31)
    assert mapping_shape(32, "symmetric", True) == (32, 33)
    assert mapping_shape(16, "blocks", True) == (16, 32)
    assert largest_network(32, 32, "symmetric", False) == 32
    assert largest_network(32, 32, "symmetric", True) == 31
    assert largest_network(32, 32, "blocks", True) == 16
    text = what_fits(32, 32)
    assert "N <= 32 units with mapping.layout: symmetric" in text
    assert "N <= 31 with mapping.diagonal: true" in text and "N <= 16 with a differential" in text
    assert isinstance(make_mapping(4, G_MIN, G_MAX, w_max=1.0), DifferentialMapping)
    with pytest.raises(ValueError, match="at least two units"):
        SymmetricMapping.from_range(1, G_MIN, G_MAX, w_max=1.0)


def test_the_config_refuses_what_the_symmetric_layout_cannot_do() -> None:
    with pytest.raises(InputError, match=r"mapping\.diagonal: false needs mapping\.layout"):
        validate_config({"mapping": {"diagonal": False}})
    with pytest.raises(InputError, match=r"loop\.analog_mvm"):
        validate_config({"mapping": {"layout": "symmetric"}, "loop": {"analog_mvm": True}})
    cfg = validate_config(task_config("glyphs32"))
    assert cfg.training.patterns == "builtin:glyphs32"
    assert (cfg.mapping.layout, cfg.mapping.diagonal, cfg.mapping.w_max) == (
        "symmetric",
        False,
        1.0,
    )
    with pytest.raises(InputError, match="unknown task 'nope'; choose one of glyphs32"):
        task_config("nope")


def test_the_32_unit_glyphs() -> None:
    ps = builtin_set("glyphs32")
    assert ps.patterns.shape == (8, 32) and ps.shape == (8, 4)
    P = ps.patterns
    distance = (P[:, None, :] != P[None, :, :]).sum(-1)[np.triu_indices(8, 1)]
    assert distance.min() >= 4
    assert patterns_from_spec("builtin:glyphs32").names == tuple("01234567")
    with pytest.raises(InputError, match="unknown built-in pattern set 'x'"):
        patterns_from_spec("builtin:x")


def test_a_board_too_small_says_what_fits(capsys: pytest.CaptureFixture[str]) -> None:
    # TaOx/HfOx: pulses inside the built-in limits, so the board's size is what is refused
    args = ["train", "--backend", "arc1", "--port", "/dev/null", "--preset", "taox_hfox"]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "needs a 100 x 200 block of devices; the board is 32 x 32" in err
    assert "N = 100 units with mapping.layout blocks" in err
    assert "`--task glyphs32` is N = 32" in err


def test_a_smaller_network_runs_on_a_block_of_the_board(tmp_path: Path) -> None:
    """An 8-pixel pattern file with differential pairs needs 8 x 16 devices of the 32 x 32."""
    out = tmp_path
    pat = out / "p.txt"
    pat.write_text("[a]\n#.#.\n#..#\n\n[b]\n.##.\n##..\n")
    stream = out / "s.txt"
    q = out / "q.yaml"
    q.write_text("evaluation: {samples: 2, curve_samples: 1}\nrun: {figures: false}\n")
    # PCMO's 2 V, 100 ns pulses fit the built-in limits and the ArC ONE's 90 ns minimum
    args = ["train", "--backend", "arc1", "--preset", "pcmo", "--dry-run", str(stream),
            "--patterns", str(pat),
            "--epochs", "1", "--quiet", "--config", str(q), "--out", str(out / "run")]  # fmt: skip
    assert main(args) == 0
    body = [line for line in stream.read_text().splitlines() if not line.startswith("#")]
    assert body[:5] == ["arc1 > 00", "arc1 > 0", "arc1 > 50", "arc1 > 8", "arc1 > 16"]


def test_the_simulator_reports_reads_as_the_boards_do() -> None:
    from sim_backend import SimulatedCrossbar

    exact = SimulatedCrossbar(3, 3, preset="epiram", seed=1).read()
    r32 = SimulatedCrossbar(3, 3, preset="epiram", seed=1, readout__format="float32_resistance")
    i32 = SimulatedCrossbar(
        3, 3, preset="epiram", seed=1, readout__format="float32_current",
        readout__format_read_v=0.3,
    )  # fmt: skip
    np.testing.assert_array_equal(r32.read(), 1.0 / resistance_f32(exact).astype(np.float64))
    np.testing.assert_array_equal(i32.read(), current_f32(exact, 0.3).astype(np.float64) / 0.3)
    assert not np.array_equal(r32.read(), exact)
    # a checkpoint taken before the read formats existed still matches its device (the
    # ideal preset's digest from then; EpiRAM's changed with its cited pulses and states)
    assert SimulatedCrossbar(1, 1, preset="ideal").config.digest() == "340c387b66b5f972"
    plain = SimulatedCrossbar(1, 1, preset="epiram").config
    assert r32.config.digest() != plain.digest()
