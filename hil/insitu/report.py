"""The report of an in-situ run: report.json, report.md and figures (matplotlib, Agg).

Figures: loss and accuracy per epoch, the G+ / G- conductance maps, pulses per device, and
corrupted -> reconstructed examples. Every file is written atomically.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray

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


def plot_curves(rundir: RunDir, history: list[dict[str, Any]]) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [h["epoch"] + 1 for h in history]
    ax1.plot(epochs, [h["loss"] for h in history], color="C0")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("mean loss per presentation")
    ax1.set_title("training loss")
    keys = sorted({k for h in history for k in h["accuracy"]})
    for key in keys:
        pts = [(h["epoch"] + 1, h["accuracy"][key]) for h in history if key in h["accuracy"]]
        if pts:
            x, y = zip(*pts, strict=True)
            ax2.plot(x, y, marker="o", ms=3, label=f"p = {key}")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (MSE < 0.1)")
    ax2.set_title("recall accuracy during training")
    if keys:
        ax2.legend()
    return _save(fig, rundir, "curves.png")


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
    figures = [
        plot_curves(rundir, report["history"]),
        plot_conductances(rundir, final["g_plus_s"], final["g_minus_s"]),
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
    report["figures"] = figures
    rundir.write_json("report.json", report)
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
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures]
    lines += ["", "Full numbers: `report.json`; every plan: `journal.sqlite`.", ""]
    write_atomic(rundir.path / "report.md", "\n".join(lines).encode())
