"""PNG figures of the reproduction (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hil.network.patterns import PatternSet

RULE_LABELS = {
    "pineda_almeida": "Pineda–Almeida",
    "hebbian": "Hebbian",
    "storkey": "Storkey",
    "nearest_pattern": "nearest pattern",
}


def patterns_figure(ps: PatternSet, path: Path) -> Path:
    """Fig. 2 analogue: the patterns (left) and their Pearson correlation matrix (right)."""
    k = ps.count
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    fig = plt.figure(figsize=(11.0, 5.0))
    subfigs = np.asarray(fig.subfigures(1, 2, width_ratios=[1.0, 1.25])).ravel()
    left, right = subfigs[0], subfigs[1]
    axes = np.atleast_1d(left.subplots(rows, cols)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < k:
            ax.imshow(ps.images()[i], cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_title(ps.names[i], fontsize=8)
    ax = right.subplots()
    im = ax.imshow(ps.correlation(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(k), ps.names, fontsize=7)
    ax.set_yticks(range(k), ps.names, fontsize=7)
    ax.set_title("Pearson correlation between patterns", fontsize=9)
    right.colorbar(im, ax=ax, fraction=0.045)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def band_figure(results: dict[str, Any], path: Path) -> Path:
    """Fig. 3 analogue: accuracy vs kept band half-width r, one curve per p."""
    band = results["band"]
    radii = sorted(int(r) for r in band)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for p in results["accuracy"]["pineda_almeida"]:
        ax.plot(radii, [band[str(r)][p] for r in radii], marker="o", label=f"p = {p}")
    ax.set_xlabel("band half-width r (W[i, j] = 0 for |i - j| > r)")
    ax.set_ylabel("accuracy (MSE < 0.1)")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def examples_figure(results: dict[str, Any], ps: PatternSet, path: Path) -> Path:
    """Fig. 5 analogue: corrupted inputs, each rule's reconstruction, and the targets."""
    ex = results["examples"]
    rows = [("corrupted", ex["corrupted"])]
    rows += [(RULE_LABELS[r], ex[r]) for r in ("hebbian", "storkey", "pineda_almeida")]
    rows.append(("target", [ps.patterns[i].tolist() for i in ex["labels"]]))
    cols = len(ex["labels"])
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.2 * cols + 1.2, 1.2 * len(rows)))
    axes = np.atleast_2d(axes)
    for r, (label, imgs) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            img = np.asarray(imgs[c]).reshape(ps.shape)
            ax.imshow(img, cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(f"corrupted with p = {ex['p']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pattern_sets_figure(results: dict[str, Any], path: Path) -> Path:
    """Accuracy of every rule on every pattern set (dots) and the mean (bar), one panel per p."""
    dist = results["pattern_sets"]
    sets = dist["sets"]
    ps_keys = list(dist["accuracy"]["pineda_almeida"])
    rules = list(RULE_LABELS)
    fig, axes = plt.subplots(1, len(ps_keys), figsize=(2.6 * len(ps_keys) + 0.6, 3.6))
    axes = np.atleast_1d(axes)
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, len(sets))
    for ax, p in zip(axes, ps_keys, strict=True):
        for i, rule in enumerate(rules):
            values = [s["accuracy"][rule][p] for s in sets]
            ax.scatter(i + jitter, values, s=9, alpha=0.6)
            ax.hlines(dist["accuracy"][rule][p]["mean"], i - 0.3, i + 0.3, color="black")
        ax.set_xticks(range(len(rules)), [RULE_LABELS[r] for r in rules], rotation=35, ha="right")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"p = {p}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("accuracy (MSE < 0.1)")
    fig.suptitle(f"{dist['count']} pattern sets ({dist['family']}): one dot per set", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
