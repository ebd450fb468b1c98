"""`mrnn-hil train`: in-situ training on a simulated array or on instruments.

With no arguments: a dry run on the simulated array (a realistic preset) with the built-in
patterns, with progress, ending in accuracy against the Hebbian and Storkey baselines and the
pulse and energy totals. `--resume DIR` continues a killed run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hil.commands.shapes import add_shape_options
from hil.insitu.run_config import SCHEME_NAMES, RunConfig, merge, read_config_file, validate_config
from hil.insitu.tasks import TASKS, task_config
from hil.insitu.trainer import ControllerState
from protocols.errors import InputError

#: Exit codes of `mrnn-hil train` (also in `--help` and docs/safety.md).
EXIT_COMPLETE = 0
EXIT_STOPPED = 3
EXIT_REFUSED = 4

EXIT_CODES = """exit codes:
  0  the run completed
  1  an instrument failed mid-run (every plan sent is journaled: --resume continues)
  2  bad input, or refused before the first pulse (limits, protocol, backend capabilities,
     a --resume whose config.json or protocol file changed)
  3  stopped on a refused update (loop.on_bad_update: stop, or loop.max_refused)
  4  completed, but more than loop.max_limit_refused_share (default 0.1) of its updates
     were refused by a safety limit: the result does not say what the run was meant to
     measure; the summary names the first refusal
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the network in situ, pulse by pulse (default: simulated array)",
        description="Train the memristor recurrent network on a crossbar with eq. 20 as pulses.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="whole run config (YAML, TOML or JSON)")
    p.add_argument(
        "--backend", choices=("sim", "visa", "serial", "arc1", "arc2"), help="array to train on"
    )
    p.add_argument("--preset", help="simulator preset or preset file (see `mrnn-hil devices`)")
    p.add_argument("--scheme", choices=SCHEME_NAMES, help="how dG becomes pulses")
    p.add_argument("--protocol", metavar="FILE", help="protocol file: pulses, limits, scheme")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--seed", type=int, help="run seed (simulator, W0, noise, rounding)")
    p.add_argument("--patterns", metavar="FILE", help="pattern file (default: built-in 16)")
    p.add_argument(
        "--task",
        choices=sorted(TASKS),
        help="a named task: its patterns and mapping (glyphs32: N = 32, fits a 32 x 32 board)",
    )
    p.add_argument("--resource", help="VISA resource string (--backend visa)")
    p.add_argument(
        "--port", help="serial port or URL (serial, arc1); board id (arc2, default: the only one)"
    )
    p.add_argument("--matrix-resource", help="switch-matrix VISA resource (--backend visa)")
    p.add_argument("--firmware", metavar="FILE", help="ArC TWO firmware file (--backend arc2)")
    add_shape_options(p)
    p.add_argument(
        "--dry-run",
        metavar="FILE",
        help="write the instrument command stream to FILE; no instrument is opened",
    )
    p.add_argument(
        "--response",
        metavar="FILE",
        help="plan with the response fitted by `mrnn-hil characterize` (its "
        "characterization.json or directory) instead of the preset's",
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/train-<time>)")
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR (with --epochs N: extend it, finished or not, to N epochs)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-figures",
        action="store_true",
        help="no PNG figures in the report (run.figures: false)",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run config: file first, then command-line options on top."""
    data: dict[str, Any] = read_config_file(args.config) if args.config else {}
    if getattr(args, "task", None):  # the task's values, under the file and the options
        data = merge(task_config(args.task), data)
    over: dict[str, Any] = {}
    if args.backend:
        over.setdefault("backend", {})["kind"] = args.backend
    if args.preset:
        over.setdefault("backend", {})["preset"] = args.preset
    if args.resource:
        over.setdefault("backend", {})["resource"] = args.resource
    if args.port:
        over.setdefault("backend", {})["port"] = args.port
    for option in ("matrix_resource", "dry_run", "firmware", "array", "block"):
        if getattr(args, option, None):
            over.setdefault("backend", {}).setdefault("options", {})[option] = getattr(args, option)
    if args.scheme:
        over["scheme"] = {"kind": args.scheme}
    if args.protocol:
        over["protocol"] = args.protocol
    if args.response:
        over["response"] = args.response
    if args.epochs is not None:
        over.setdefault("training", {})["epochs"] = args.epochs
    if args.patterns:
        over.setdefault("training", {})["patterns"] = args.patterns
    if args.seed is not None:
        over["seed"] = args.seed
    if getattr(args, "no_figures", False):
        over.setdefault("run", {})["figures"] = False
    source = f"config {args.config}" if args.config else "options"
    return validate_config(merge(data, over), source)


class ProgressBar:
    """tqdm over presentations: epoch, loss (last complete epoch), pulses, time left."""

    def __init__(self, enabled: bool, epochs: int = 1) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.bar: Any = None
        self.last = 0.0
        self.last_loss = float("nan")

    def __call__(self, st: ControllerState, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=st.position - 1,
                unit="pres",
                file=sys.stderr,
                desc="training",
            )
        self.bar.update(st.position - self.bar.n)
        per_epoch = max(total // max(self.epochs, 1), 1)
        if st.epoch_acc.count:
            self.last_loss = st.epoch_acc.loss / st.epoch_acc.count
        now = time.monotonic()
        if now - self.last > 0.25 or st.position == total:
            self.last = now
            self.bar.set_postfix(
                epoch=f"{min(st.position // per_epoch + 1, self.epochs)}/{self.epochs}",
                loss=f"{self.last_loss:.3g}",
                pulses=st.totals.pulses,
                refresh=False,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_summary(report: dict[str, Any], rundir: Path, note: str | None) -> None:
    acc = report["accuracy"]
    ps = list(acc["in_situ"].keys())
    t = report["totals"]
    out = sys.stdout
    if note:
        print(f"resume: {note}", file=out)
    print(f"\nrun {report['status']}: {rundir}", file=out)
    print(f"{'rule':<18}" + "".join(f"{'p=' + p:>10}" for p in ps), file=out)
    for rule, row in acc.items():
        print(f"{rule:<18}" + "".join(f"{row[p]:>10.3f}" for p in ps), file=out)
    print(
        f"pulses: {t['pulses']} ({t['set_pulses']} SET / {t['reset_pulses']} RESET) in "
        f"{t['plans']} plans; energy estimate: {t['energy_j']:.4g} J; refused updates: "
        f"{t['refused']}; stuck devices: {report['stuck']['stuck_devices']}",
        file=out,
    )
    print(f"report: {rundir / 'report.md'}", file=out)
    if report.get("refused"):
        print(f"mrnn-hil train: run refused: {report['refused']}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from hil.insitu.training_run import resume_run, start_run

    bar = ProgressBar(enabled=not args.quiet)
    if not getattr(args, "verbose", False):
        # Refused updates are journaled (events table) and counted in the summary; the rule's
        # per-update warnings would only break the progress bar.
        logging.getLogger("hil.network.learning").setLevel(logging.ERROR)
    try:
        if args.resume:
            others = [
                name
                for name in (
                    "config",
                    "backend",
                    "preset",
                    "scheme",
                    "protocol",
                    "seed",
                    "patterns",
                    "task",
                    "response",
                    "resource",
                    "port",
                    "matrix_resource",
                    "firmware",
                    "dry_run",
                    "array",
                    "block",
                    "out",
                    "no_figures",
                )
                if getattr(args, name, None) not in (None, False)
            ]
            if others:
                flag = others[0].replace("_", "-")
                raise InputError(
                    f"--resume continues a run with its own config ({args.resume}/config.json); "
                    f"drop --{flag}"
                )
            extended = None
            if args.epochs is not None:  # the one field a resume may change: more epochs
                from hil.insitu.extend import extend_run

                extended = extend_run(args.resume, args.epochs)
            bar.epochs = _epochs_of(Path(args.resume))
            outcome = resume_run(args.resume, progress=bar, notify=_notify)
            if extended:
                outcome.resumed = f"{extended}; {outcome.resumed}"
        else:
            cfg = config_from_args(args)
            bar.epochs = cfg.training.epochs
            out = (
                Path(args.out) if args.out else Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
            )
            outcome = start_run(cfg, out, progress=bar, notify=_notify)
    finally:
        bar.close()
    print_summary(outcome.report, outcome.rundir.path, outcome.resumed)
    status = outcome.report["status"]
    return {"stopped": EXIT_STOPPED, "refused": EXIT_REFUSED}.get(status, EXIT_COMPLETE)


def _notify(message: str) -> None:
    """What a user must see before the run starts (a limit raised on purpose): stderr."""
    print(f"mrnn-hil train: {message}", file=sys.stderr, flush=True)


def _epochs_of(path: Path) -> int:
    from hil.insitu.rundir import RunDir
    from hil.insitu.training_run import load_run_config

    return load_run_config(RunDir.open(path)).training.epochs
