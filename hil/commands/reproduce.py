"""`mrnn-hil reproduce`: the paper's Table I and Fig. 3 on a laptop, with the baselines."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from hil.network import reproduce as experiment
from hil.network.patterns import builtin_patterns, load_patterns
from hil.network.reproduce import RULES, Bar, ReproduceConfig
from protocols.errors import InputError

LABELS = {
    "pineda_almeida": "Pineda–Almeida",
    "hebbian": "Hebbian",
    "storkey": "Storkey",
    "nearest_pattern": "nearest pattern (ceiling)",
}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="train and evaluate the paper's experiment (Table I, Fig. 3)",
        description="Train the Pineda–Almeida network in software on the patterns, compare it "
        "with Hebbian and Storkey Hopfield networks and the nearest-pattern ceiling on "
        "corrupted copies, optionally sweep the band of kept weights, and write "
        "DIR/results.json and PNG figures.",
    )
    p.add_argument("--patterns", metavar="FILE", help="text grid or .npy (default: built-in)")
    p.add_argument("--epochs", type=int, default=300, metavar="N", help="default 300")
    p.add_argument(
        "--samples", type=int, default=1000, metavar="K", help="corrupted samples per pattern"
    )
    p.add_argument(
        "--p",
        type=float,
        nargs="+",
        default=[0.10, 0.15, 0.20, 0.25],
        metavar="P",
        help="corruption probabilities (default 0.10 0.15 0.20 0.25)",
    )
    p.add_argument(
        "--radii",
        type=int,
        nargs="+",
        default=[],
        metavar="R",
        help="band half-widths to sweep (Fig. 3); without it no sweep runs",
    )
    p.add_argument(
        "--train-noise",
        type=float,
        default=None,
        metavar="P",
        help="denoising mode: train on inputs corrupted with probability P",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--out", type=Path, metavar="DIR", help="default: a fresh runs/reproduce-<time>")


def _config(args: argparse.Namespace) -> ReproduceConfig:
    try:
        return ReproduceConfig(
            epochs=args.epochs,
            samples=args.samples,
            p_values=tuple(args.p),
            radii=tuple(args.radii),
            train_noise=args.train_noise,
            seed=args.seed,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = {"p_values": "--p", "train_noise": "--train-noise"}.get(
            str(err["loc"][0]) if err["loc"] else "", f"--{err['loc'][0] if err['loc'] else ''}"
        )
        raise InputError(f"{field}: {err['msg']} (got {err.get('input')!r})") from None


@contextmanager
def _tqdm_bar(desc: str, total: int) -> Iterator[Bar]:
    with tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        yield bar


def format_tables(results: dict[str, Any]) -> str:
    """Table I analogue (rules x p) and Fig. 3 analogue (r x p) as plain text."""
    ps = list(results["accuracy"]["pineda_almeida"])
    width = max(len(v) for v in LABELS.values())
    lines = [
        f"Accuracy (MSE < 0.1), exact recovery in brackets, "
        f"{results['config']['samples']} samples per pattern and p",
        f"{'rule':<{width}}  " + "  ".join(f"{'p=' + p:>15}" for p in ps),
    ]
    for rule in RULES:
        cells = [
            f"{results['accuracy'][rule][p]:>6.4f} ({results['exact'][rule][p]:.4f})" for p in ps
        ]
        lines.append(f"{LABELS[rule]:<{width}}  " + "  ".join(f"{c:>15}" for c in cells))
    lines += ["", "The same threshold read on a 0/1 encoding of the images (MSE < 0.4 on ±1)"]
    for rule in RULES:
        cells = [f"{results['accuracy_01'][rule][p]:>6.4f}" for p in ps]
        lines.append(f"{LABELS[rule]:<{width}}  " + "  ".join(f"{c:>15}" for c in cells))
    if results["band"]:
        lines += ["", "Pineda–Almeida accuracy with W cut to the band |i - j| <= r"]
        lines.append(f"{'r':>4} {'synapses':>9}  " + "  ".join(f"{'p=' + p:>7}" for p in ps))
        syn = results["patterns"]["synapses_per_radius"]
        for r, row in results["band"].items():
            lines.append(f"{r:>4} {syn[r]:>9}  " + "  ".join(f"{row[p]:>7.4f}" for p in ps))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from hil.network.figures import band_figure, examples_figure, patterns_figure

    cfg = _config(args)
    ps = load_patterns(args.patterns) if args.patterns else builtin_patterns()
    out: Path = args.out or Path("runs") / time.strftime("reproduce-%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    results = experiment.run(ps, cfg, bar=_tqdm_bar)
    results["config"]["patterns"] = str(args.patterns) if args.patterns else "built-in"
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        patterns_figure(ps, out / "patterns.png"),
        examples_figure(results, ps, out / "examples.png"),
    ]
    if results["band"]:
        figures.append(band_figure(results, out / "band.png"))
    results["figures"] = [f.name for f in figures]
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "results.json")
    print(format_tables(results))
    print(
        f"\nmode {results['config']['mode']}, {cfg.epochs} epochs, seed {cfg.seed}, "
        f"{results['timing']['total_s']:.1f} s; wrote {out / 'results.json'} and "
        + ", ".join(f.name for f in figures)
    )
    return 0
