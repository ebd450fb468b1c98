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
from hil.network.pattern_sets import DrawRule, density, draw_sets, to_text
from hil.network.patterns import PatternSet, builtin_patterns, letters26, load_patterns
from hil.network.reproduce import RULES, Bar, ReproduceConfig
from protocols.errors import InputError

#: Corrupted samples per pattern and p: the paper's 1000 for one set. Over many sets the
#: spread between sets dominates the sampling error of each (at 250, at most 0.008 per set at
#: 16 patterns), and 20 sets then fit in a few minutes on two cores.
SAMPLES = 1000
SET_SAMPLES = 250
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
        "--samples",
        type=int,
        default=None,
        metavar="K",
        help=f"corrupted samples per pattern and p (default {SAMPLES}; "
        f"{SET_SAMPLES} per set with --pattern-sets)",
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
    sets = p.add_argument_group(
        "pattern sets",
        "Table I over K random pattern sets instead of one: mean, sd, min and max per rule "
        "and p. Letters are drawn from the 26-letter font (or from --patterns FILE).",
    )
    sets.add_argument(
        "--pattern-sets", type=int, default=None, metavar="K", help="number of random sets"
    )
    sets.add_argument(
        "--pattern-family",
        choices=("letters", "random"),
        default="letters",
        help="letters: subsets of the font; random: ±1 pixels at the font's on-density",
    )
    sets.add_argument("--set-size", type=int, default=16, metavar="N", help="default 16")
    sets.add_argument(
        "--min-distance",
        type=int,
        default=8,
        metavar="D",
        help="every pair of a set differs in at least D pixels (default 8)",
    )
    guard = p.add_argument_group(
        "update guard", "how the side network is solved and what happens to large updates"
    )
    guard.add_argument(
        "--side-solver",
        choices=("relax", "exact"),
        default="relax",
        help="relax: integrate eq. 19 over its span (paper); exact: one linear solve",
    )
    guard.add_argument(
        "--update-guard",
        choices=("settle", "filter", "clip", "none"),
        default=None,
        help="clip: scale a sample's y v^T to max-norm --max-grad; filter: leave such samples "
        "out; settle: leave out samples whose side network has not settled (relax only); "
        "none: accept all (default: settle in paper mode, where it refuses nothing; clip "
        "with --train-noise)",
    )
    guard.add_argument(
        "--max-grad",
        type=float,
        default=experiment.RuleConfig().max_grad,
        metavar="X",
        help=f"threshold of filter and clip (default {experiment.RuleConfig().max_grad:g})",
    )


def _config(args: argparse.Namespace) -> ReproduceConfig:
    try:
        return ReproduceConfig(
            epochs=args.epochs,
            samples=args.samples
            if args.samples is not None
            else (SET_SAMPLES if args.pattern_sets is not None else SAMPLES),
            p_values=tuple(args.p),
            radii=tuple(args.radii),
            train_noise=args.train_noise,
            seed=args.seed,
            side_solver=args.side_solver,
            update_guard=args.update_guard,
            max_grad=args.max_grad,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a check across options
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise InputError(f"--side-solver/--update-guard: {msg}") from None
        name = str(err["loc"][0])
        field = {"p_values": "--p", "train_noise": "--train-noise"}.get(
            name, "--" + name.replace("_", "-")
        )
        raise InputError(f"{field}: {err['msg']} (got {err.get('input')!r})") from None


@contextmanager
def _tqdm_bar(desc: str, total: int) -> Iterator[Bar]:
    with tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        yield bar


def format_guard(results: dict[str, Any]) -> str:
    """One line: how many training samples the update guard left out or scaled, and why."""
    rule = results["config"]["rule"]
    tr = results["training"]
    outcomes = tr.get("outcomes", {})
    total = sum(v for k, v in outcomes.items() if k != "clipped")
    reasons = ", ".join(f"{k} {v}" for k, v in outcomes.items() if k not in ("ok", "clipped") and v)
    text = (
        f"update guard ({rule['side_solver']} side solve, {rule['update_guard']}"
        + (f", max_grad {rule['max_grad']:g}" if rule["update_guard"] in ("filter", "clip") else "")
        + f"): {tr['refused']} of {total} training samples left out"
        + (f" ({reasons})" if reasons else "")
    )
    if outcomes.get("clipped"):
        text += f", {outcomes['clipped']} scaled down"
    return text


def format_distribution(results: dict[str, Any]) -> str:
    """Table I over pattern sets: per rule and p, mean, sd, min and max over the sets."""
    dist = results["pattern_sets"]
    ps = list(dist["accuracy"]["pineda_almeida"])
    width = max(len(v) for v in LABELS.values())
    lines = [
        f"Accuracy (MSE < 0.1) over {dist['count']} pattern sets ({dist['family']}: "
        f"{dist['rule']}), {results['config']['samples']} samples per pattern and p;",
        "last column: mean of the secondary, more lenient score (MSE < 0.4 on ±1, i.e. 0.1 "
        "on a 0/1 encoding)",
        f"{'rule':<{width}}  {'p':>4}  {'mean':>6}  {'sd':>6}  {'min':>6}  {'max':>6}  "
        f"{'0/1 mean':>8}",
    ]
    for rule in RULES:
        for p in ps:
            d = dist["accuracy"][rule][p]
            lenient = dist["accuracy_01"][rule][p]["mean"]
            lines.append(
                f"{LABELS[rule]:<{width}}  {p:>4}  {d['mean']:6.4f}  {d['sd']:6.4f}  "
                f"{d['min']:6.4f}  {d['max']:6.4f}  {lenient:8.4f}"
            )
    return "\n".join(lines)


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
    lines += ["", "Secondary, more lenient: MSE < 0.4 on ±1 (0.1 on a 0/1 encoding)"]
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


def _source(args: argparse.Namespace) -> PatternSet:
    if args.patterns:
        return load_patterns(args.patterns)
    return letters26() if args.pattern_sets is not None else builtin_patterns()


def _write_json(path: Path, results: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    out: Path = args.out or Path("runs") / time.strftime("reproduce-%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    if args.pattern_sets is not None:
        return _run_sets(args, cfg, out)
    from hil.network.figures import band_figure, examples_figure, patterns_figure

    ps = _source(args)
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
    _write_json(out / "results.json", results)
    print(format_tables(results))
    print("\n" + format_guard(results))
    print(
        f"mode {results['config']['mode']}, {cfg.epochs} epochs, seed {cfg.seed}, "
        f"{results['timing']['total_s']:.1f} s; wrote {out / 'results.json'} and "
        + ", ".join(f.name for f in figures)
    )
    return 0


def _run_sets(args: argparse.Namespace, cfg: ReproduceConfig, out: Path) -> int:
    """`--pattern-sets K`: Table I over K random sets, their files and the distribution."""
    from hil.network.figures import pattern_sets_figure

    if args.radii:
        raise InputError("--radii: the band sweep runs on one pattern set, not with --pattern-sets")
    if args.set_size < 2:
        raise InputError(f"--set-size: need at least 2 patterns per set (got {args.set_size})")
    if args.min_distance < 0:
        raise InputError(f"--min-distance: must be >= 0 (got {args.min_distance})")
    source = _source(args)
    rule = DrawRule(size=args.set_size, min_distance=args.min_distance)
    sets = draw_sets(source, args.pattern_family, args.pattern_sets, rule, cfg.seed)
    record = {
        "family": args.pattern_family,
        "rule": rule.text(),
        "source": str(args.patterns) if args.patterns else "26-letter font",
        "source_density": density(source),
    }
    results = experiment.run_pattern_sets(sets, cfg, source=record, bar=_tqdm_bar)
    results["config"]["patterns"] = record["source"]
    set_dir = out / "sets"
    set_dir.mkdir(parents=True, exist_ok=True)
    digits = len(str(len(sets) - 1))
    for i, (ps, entry) in enumerate(zip(sets, results["pattern_sets"]["sets"], strict=True)):
        name = f"set-{i:0{digits}d}.txt"
        (set_dir / name).write_text(to_text(ps), encoding="utf-8")
        entry["file"] = f"sets/{name}"
    figure = pattern_sets_figure(results, out / "pattern-sets.png")
    results["figures"] = [figure.name]
    _write_json(out / "results.json", results)
    print(format_distribution(results))
    print("\n" + format_guard(results))
    print(
        f"mode {results['config']['mode']}, {cfg.epochs} epochs, seed {cfg.seed}, "
        f"{results['timing']['total_s']:.1f} s; wrote {out / 'results.json'}, "
        f"{figure.name} and {len(sets)} set files in {set_dir}"
    )
    return 0
