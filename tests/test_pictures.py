"""Pictures: a preset's pulse response (`devices --plot`) and the characterisation's
G_min / G_max histograms drawn on the scale of the values (nS, µS), not on +-0.5 S."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from insitu_support import cli

from hil.characterize import plots
from hil.characterize.characterization import Characterization
from hil.characterize.preset_response import pulse_traces


def test_devices_plot_draws_a_preset_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    out = tmp_path / "r.png"
    done = cli("devices", "--plot", "epiram", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    bad = cli("devices", "--plot", "no_such", "--out", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "no_such" in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_the_traces_climb_with_set_and_fall_with_reset_across_the_window() -> None:
    from sim_backend import get_preset

    cfg = get_preset("ideal")
    tr = pulse_traces("ideal", devices=4)
    up, down = tr["set"], tr["reset"]
    assert np.all(np.diff(up, axis=0) >= -1e-12) and np.all(np.diff(down, axis=0) <= 1e-12)
    span = cfg.g_max_s - cfg.g_min_s
    assert np.all(up[-1] > cfg.g_max_s - 0.05 * span)
    assert np.all(down[-1] < cfg.g_min_s + 0.05 * span)
    assert np.all(tr["start"] < cfg.g_min_s + 0.05 * span)


def _drawn_axes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    real = plots.plt.close

    def keep(fig: Any = None) -> None:
        seen.extend(fig.axes)
        real(fig)

    monkeypatch.setattr(plots.plt, "close", keep)
    return seen


@pytest.mark.parametrize(("g_min", "unit", "factor"), [(2e-9, "nS", 1e9), (3e-6, "µS", 1e6)])
def test_conductance_histograms_span_the_values_in_their_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, g_min: float, unit: str, factor: float
) -> None:
    axes = _drawn_axes(monkeypatch)
    result = Characterization(
        metrics={},
        per_device={
            "g_min_s": [g_min] * 8,  # every device at the same value: the case that broke
            "g_max_s": list(np.linspace(40 * g_min, 60 * g_min, 8)),
            "nl_ltp": [1.0] * 8,
        },
        response=None,
        stuck=[],
    )
    plots.plot_histograms(result, tmp_path / "h.png")
    g_min_ax, g_max_ax = axes[0], axes[1]
    assert unit in g_min_ax.get_xlabel() and unit in g_max_ax.get_xlabel()
    lo, hi = g_min_ax.get_xlim()
    assert lo < g_min * factor < hi and hi - lo < 0.5 * g_min * factor
    lo, hi = g_max_ax.get_xlim()
    assert lo <= 40 * g_min * factor and hi >= 60 * g_min * factor and hi - lo < 40 * g_min * factor
    counts = [p.get_height() for p in g_min_ax.patches]
    assert sum(counts) == 8
