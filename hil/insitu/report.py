"""The report of an in-situ run: report.json, report.md and figures (matplotlib, Agg).

Figures: loss and accuracy per epoch (with the Hebbian, Storkey and nearest-pattern
baselines), the G+ / G- conductance maps, the array's conductances over training (from the
snapshots kept with the checkpoints), final conductance histograms with the stuck devices
marked, pulses per device, and corrupted -> reconstructed examples. Every file is written
atomically.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray

from hil.insitu.history import snapshots
from hil.insitu.rundir import RunDir, write_atomic
from hil.network.evaluation import pineda_recall
from hil.network.patterns import PatternSet, corrupt

if TYPE_CHECKING:
    from hil.insitu.trainer import InSituTrainer


def _save(fig: Any, rundir: RunDir, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_atomic(rundir.path / name, buf.getvalue())
    return name


BASELINE_STYLES = {"hebbian": "--", "storkey": ":", "nearest_pattern": "-."}


def plot_curves(
    rundir: RunDir,
    history: list[dict[str, Any]],
    baselines: dict[str, dict[str, float]] | None = None,
) -> str:
    """Loss and accuracy per epoch; the baselines' final accuracies as horizontal lines."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [h["epoch"] + 1 for h in history]
    ax1.plot(epochs, [h["loss"] for h in history], color="C0")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("mean loss per presentation")
    ax1.set_title("training loss")
    keys = sorted({k for h in history for k in h["accuracy"]})
    for i, key in enumerate(keys):
        pts = [(h["epoch"] + 1, h["accuracy"][key]) for h in history if key in h["accuracy"]]
        if pts:
            x, y = zip(*pts, strict=True)
            ax2.plot(x, y, marker="o", ms=3, color=f"C{i}", label=f"in situ, p = {key}")
        for rule, style in BASELINE_STYLES.items():
            value = (baselines or {}).get(rule, {}).get(key)
            if value is not None:
                ax2.axhline(value, color=f"C{i}", ls=style, lw=1.0, alpha=0.8,
                            label=f"{rule.replace('_', ' ')}, p = {key}")  # fmt: skip
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (MSE < 0.1)")
    ax2.set_title("recall accuracy during training")
    if keys:
        ax2.legend(fontsize=7, loc="lower right", ncol=2)
    return _save(fig, rundir, "curves.png")


def plot_conductance_history(rundir: RunDir, most: int = 6) -> str | None:
    """The whole array's conductances at up to `most` moments of training (the snapshots)."""
    found = snapshots(rundir)
    if len(found) < 2:
        return None
    pick = sorted({round(i * (len(found) - 1) / (most - 1)) for i in range(most)})
    shown = [found[i] for i in pick]
    lo = min(float(s.conductance_s.min()) for s in shown) * 1e6
    hi = max(float(s.conductance_s.max()) for s in shown) * 1e6
    rows, cols = shown[0].conductance_s.shape
    ncols = 2 if len(shown) > 3 else 1
    nrows = -(-len(shown) // ncols)
    width = 5.2 * ncols
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width + 1.2, 0.6 + nrows * 5.2 * rows / cols + 0.3 * nrows),
        squeeze=False,
    )
    for ax in axes.ravel()[len(shown) :]:
        ax.axis("off")
    for ax, snap in zip(axes.ravel(), shown, strict=False):
        im = ax.imshow(snap.conductance_s * 1e6, vmin=lo, vmax=hi, cmap="viridis", aspect="equal")
        ax.set_title(f"after epoch {snap.epochs}" if snap.epochs else "W0 programmed", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("tracked conductances over training (array rows x columns: G+ block, G- block)")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="µS")
    return _save(fig, rundir, "conductance_history.png")


def plot_conductance_histograms(
    rundir: RunDir,
    g_plus: NDArray[Any],
    g_minus: NDArray[Any],
    stuck: tuple[NDArray[Any], NDArray[Any]],
    g_range: tuple[float, float],
) -> str:
    """Final G+ and G- distributions; stuck devices stacked on top in red; the mapped range."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    lo = min(float(g_plus.min()), float(g_minus.min()), g_range[0]) * 1e6
    hi = max(float(g_plus.max()), float(g_minus.max()), g_range[1]) * 1e6
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 61)
    for ax, g, mask, name in zip(axes, (g_plus, g_minus), stuck, ("G+", "G-"), strict=True):
        ok = g[~mask].ravel() * 1e6
        bad = g[mask].ravel() * 1e6
        ax.hist([ok, bad], bins=bins, stacked=True, color=["tab:blue", "tab:red"],
                label=["working", f"stuck ({bad.size})"])  # fmt: skip
        for edge in g_range:
            ax.axvline(edge * 1e6, color="black", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel(f"{name}, final read (µS); dashed: G_min, G_max of the mapping")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("devices")
    fig.suptitle("final conductance distribution")
    return _save(fig, rundir, "conductance_histogram.png")


def plot_conductances(rundir: RunDir, g_plus: NDArray[Any], g_minus: NDArray[Any]) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    lo = float(min(g_plus.min(), g_minus.min())) * 1e6
    hi = float(max(g_plus.max(), g_minus.max())) * 1e6
    for ax, g, name in zip(axes, (g_plus, g_minus), ("G+", "G-"), strict=True):
        im = ax.imshow(g * 1e6, vmin=lo, vmax=hi, cmap="viridis")
        ax.set_title(f"{name} (µS), final read")
        ax.set_xlabel("weight column j")
        ax.set_ylabel("weight row i")
    fig.colorbar(im, ax=axes, shrink=0.85, label="µS")
    return _save(fig, rundir, "conductances.png")


def plot_pulse_counts(rundir: RunDir, counts: NDArray[Any]) -> str:
    fig, ax = plt.subplots(figsize=(10, 4.2))
    im = ax.imshow(counts, cmap="magma", aspect="auto")
    ax.set_title("pulses per device over the run (physical array, rows x cols)")
    ax.set_xlabel("array column")
    ax.set_ylabel("array row")
    fig.colorbar(im, ax=ax, label="pulses")
    return _save(fig, rundir, "pulse_counts.png")


def plot_examples(
    rundir: RunDir, W: NDArray[Any], patterns: PatternSet, p: float, seed: int, v0: float
) -> str:
    k = min(6, patterns.count)
    rng = np.random.default_rng([seed, 99])
    clean = patterns.patterns[:k]
    noisy = corrupt(clean, p, rng)
    out = pineda_recall(W, noisy, v0=v0).state
    fig, axes = plt.subplots(3, k, figsize=(1.6 * k, 5.0), squeeze=False)
    for j in range(k):
        for row, (img, label) in enumerate(
            ((noisy[j], "corrupted"), (out[j], "reconstructed"), (clean[j], "target"))
        ):
            ax = axes[row][j]
            ax.imshow(img.reshape(patterns.shape), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle(f"in-situ trained network, p = {p:.2f}")
    return _save(fig, rundir, "examples.png")


def _table(accuracy: dict[str, dict[str, float]]) -> list[str]:
    ps = sorted(next(iter(accuracy.values())).keys())
    lines = ["| rule | " + " | ".join(f"p = {p}" for p in ps) + " |"]
    lines.append("|---|" + "---|" * len(ps))
    for rule, row in accuracy.items():
        lines.append(f"| {rule} | " + " | ".join(f"{row[p]:.3f}" for p in ps) + " |")
    return lines


def write_report(
    rundir: RunDir,
    report: dict[str, Any],
    final: dict[str, NDArray[Any]],
    trainer: InSituTrainer,
    patterns: PatternSet,
) -> None:
    stuck = dict(report["stuck"])
    devices = stuck.get("devices", [])
    if isinstance(devices, list) and len(devices) > 100:
        stuck["devices"] = devices[:100]
        stuck["devices_truncated"] = True
    report["stuck"] = stuck
    report["figures"] = (
        _figures(rundir, report, final, trainer, patterns) if trainer.cfg.run.figures else []
    )
    rundir.write_json("report.json", report)
    write_atomic(rundir.path / "report.md", _markdown(report).encode())


def _figures(
    rundir: RunDir,
    report: dict[str, Any],
    final: dict[str, NDArray[Any]],
    trainer: InSituTrainer,
    patterns: PatternSet,
) -> list[str]:
    baselines = {k: v for k, v in report["accuracy"].items() if k != "in_situ"}
    stuck_plus, stuck_minus = trainer.mapping.split(np.asarray(final["stuck"], dtype=float))
    figures = [
        plot_curves(rundir, report["history"], baselines),
        plot_conductances(rundir, final["g_plus_s"], final["g_minus_s"]),
        plot_conductance_histograms(
            rundir,
            final["g_plus_s"],
            final["g_minus_s"],
            (stuck_plus > 0.5, stuck_minus > 0.5),  # an unstored diagonal splits to G_mid
            (trainer.mapping.g_min_s, trainer.mapping.g_max_s),
        ),
        plot_pulse_counts(rundir, final["pulse_counts"]),
        plot_examples(
            rundir,
            final["weights"],
            patterns,
            max(trainer.cfg.evaluation.p),
            trainer.cfg.seed,
            trainer.cfg.rule.v0,
        ),
    ]
    history = plot_conductance_history(rundir)
    if history is not None:
        figures.insert(3, history)
    return figures


def _markdown(report: dict[str, Any]) -> str:
    stuck = report["stuck"]
    figures = report["figures"]
    t = report["totals"]
    lines = [
        f"# In-situ training run: {report['status']}",
        "",
        f"- backend: {report['backend']['name']} ({report['backend']['kind']}), "
        f"{report['backend']['rows']} x {report['backend']['cols']} devices",
        f"- scheme: {report['scheme']['kind'] if report['scheme'] else '-'}; "
        f"mapping g_scale = {report['mapping']['g_scale']:.4g} S per unit weight "
        f"(w_max = {report['mapping']['w_max']:.3g})",
        f"- presentations: {report['presentations']} ({report['epochs_completed']} epochs)",
        f"- pulses: {t['pulses']} ({t['set_pulses']} SET, {t['reset_pulses']} RESET) in "
        f"{t['plans']} plans; energy estimate {t['energy_j']:.4g} J; reads: {t['reads']}",
        f"- refused updates: {t['refused']}; stuck devices: {stuck['stuck_devices']} "
        f"({stuck['frozen_weights']} weights frozen, {stuck['one_sided_weights']} one-sided)",
        f"- W0 programming rms error: {report['w0_rms_error']}",
    ]
    if report["stopped"]:
        lines.append(f"- {report['stopped']}")
    if report.get("refused"):
        lines.append(f"- refused: {report['refused']}")
    lines += ["", "## Accuracy (MSE < 0.1)", "", *_table(report["accuracy"]), ""]
    lines += ["## Figures", ""]
    lines += [f"![{f}]({f})" for f in figures] or ["none drawn (`run.figures: false`)"]
    lines += ["", "Full numbers: `report.json`; every plan: `journal.sqlite`.", ""]
    return "\n".join(lines)
