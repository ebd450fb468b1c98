"""Planted bugs: does the test suite fail when the code it guards is broken?

Each plant is one small, exact source edit of a kind a careless change could make (a check
disabled, a step skipped, a value formatted the wrong way). For each plant the git-tracked
files are copied into a temporary directory, the edit is applied there (its old text must
occur exactly once, else the plant is reported broken), and the plant's target tests run in
that copy with pytest, the copy first on PYTHONPATH and as the working directory (checked:
`hil.__file__` and the other packages must come from the copy). The plant is CAUGHT when the
tests fail and SURVIVED when they pass. A baseline run of the union of the targets on the
unplanted copy must pass, or no plant result means anything.

    python tests/planted_bugs.py [--only NAME ...] [--jobs N] [--full] [--list] [--no-baseline]

`--full` runs the whole suite for each plant instead of its targets. One line per plant, then
one JSON object on the last line ({plant: "caught" | "survived" | "broken", ..., "caught": n,
"survived": n, "broken": n, "baseline": ..., "wall_s": ...}). Exit code 1 when a plant
survived or broke, or the baseline failed.

Not a test module (its name does not match `test_*.py`): pytest never collects it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hil", "drivers", "protocols", "sim_backend")
#: A plant's pytest run that takes longer than this is reported broken (a hang is a bad plant).
RUN_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Plant:
    name: str
    what: str
    path: str
    old: str
    new: str
    targets: tuple[str, ...]


@dataclass
class Outcome:
    name: str
    verdict: str  # "caught" | "survived" | "broken" (or "passed" / "failed" for the baseline)
    seconds: float
    detail: str = ""
    output: str = field(default="", repr=False)


T_CRASH = "tests/test_crash_points.py"
T_RESUME = "tests/test_resume_integrity.py"
T_RESUME_STATE = "tests/test_resume_state.py"
T_CRASH_VISA = T_CRASH + "::test_crash_points_on_the_visa_station_never_resend_an_unconfirmed_plan"
T_BOARD = "tests/test_drivers_board_records.py"
T_LIMITS = "tests/test_limits_named_checks.py"
T_ENVELOPE = "tests/test_safety_envelope.py"

PLANTS: tuple[Plant, ...] = (
    # -- resume and journal -------------------------------------------------------------------
    Plant(
        "replay_not_marked_applied",
        "a plan re-sent after a snapshot restore is counted but never marked applied",
        "hil/insitu/journal.py",
        "\"UPDATE plans SET replays = replays + 1, state = 'applied', \"",
        '"UPDATE plans SET replays = replays + 1, "',
        (T_RESUME,),
    ),
    Plant(
        "replay_digest_not_compared",
        "a plan regenerated on resume is sent without comparing its digest with the journal",
        "hil/insitu/trainer.py",
        "if record is None or record.digest != plan.digest():",
        "if record is None:",
        (T_RESUME,),
    ),
    Plant(
        "kept_copy_digest_unchecked",
        "a journaled plan copy (settled or counted on resume) is trusted without its digest",
        "hil/insitu/journal.py",
        "if plan.digest() != digest:",
        "if False:",
        (T_RESUME,),
    ),
    Plant(
        "resume_epoch_order_lost",
        "a resume does not restore the epoch's presentation order from the checkpoint",
        "hil/insitu/trainer.py",
        'self.epoch_order = np.asarray(arrays["epoch_order"]).copy()',
        "self.epoch_order = np.arange(self.per_epoch)",
        (T_RESUME_STATE,),
    ),
    Plant(
        "resume_budget_forgets_unknown_plan",
        "a resume does not count a plan journaled 'unknown' in the per-run pulse budget",
        "hil/insitu/trainer.py",
        "                else:\n                    st.run_counts += kept[0].counts_per_device()\n",
        "                else:\n                    pass\n",
        (T_CRASH_VISA,),
    ),
    Plant(
        "resume_budget_forgets_unsettled_plan",
        "a plan left in 'intent' and marked unknown on resume is not counted in the budget",
        "hil/insitu/trainer.py",
        "                self.state.run_counts += kept[0].counts_per_device()\n",
        "                pass\n",
        (T_RESUME_STATE,),
    ),
    Plant(
        "journal_sync_full_without_pragma",
        "journal_sync: full commits intents without synchronous=FULL",
        "hil/insitu/journal.py",
        'self._conn.execute("PRAGMA synchronous=FULL")',
        'self._conn.execute("PRAGMA synchronous=NORMAL")',
        (T_RESUME,),
    ),
    Plant(
        "journal_sync_auto_always_normal",
        "journal_sync: auto picks normal on an instrument too",
        "hil/insitu/training_run.py",
        'return "normal" if cfg.backend.kind == "sim" else "full"',
        'return "normal"',
        (T_RESUME_STATE,),
    ),
    Plant(
        "visa_unknown_plan_resent",
        "a resume re-sends a VISA plan it had to mark unknown",
        "hil/insitu/trainer.py",
        "                self.state.run_counts += kept[0].counts_per_device()\n"
        "            self.journal.mark_unknown(seq)\n",
        "                self.state.run_counts += kept[0].counts_per_device()\n"
        "                self.backend.apply(kept[0])\n"
        "            self.journal.mark_unknown(seq)\n",
        (T_CRASH_VISA,),
    ),
    # -- the pulse board's own record ---------------------------------------------------------
    Plant(
        "board_status_range_unchecked",
        "on resume, a board record outside the journaled plan's batches is accepted",
        "drivers/serial_backend.py",
        "if last < ticket.first - 1 or last > final:",
        "if False:",
        (T_BOARD,),
    ),
    Plant(
        "board_status_pulses_unchecked",
        "on resume, the plan's last batch with the wrong pulse count is accepted",
        "drivers/serial_backend.py",
        "if applied and last_pulses != ticket.pulses[applied - 1]:",
        "if False:",
        (T_BOARD,),
    ),
    Plant(
        "board_ahead_of_host_unchecked",
        "after a lost DONE, a board reporting a batch ahead of the host is not refused",
        "drivers/serial_backend.py",
        "        if last > batch:\n",
        "        if False:\n",
        (T_BOARD,),
    ),
    Plant(
        "board_last_pulses_unchecked",
        "after a lost DONE, the last batch with the wrong pulse count counts as applied",
        "drivers/serial_backend.py",
        "            if last_pulses != pulses:\n",
        "            if False:\n",
        (T_BOARD,),
    ),
    Plant(
        "board_done_unchecked",
        "a DONE naming another batch or pulse count is accepted",
        "drivers/serial_backend.py",
        "if got_batch != batch or got_pulses != pulses:",
        "if False:",
        (T_BOARD,),
    ),
    # -- characterisation ---------------------------------------------------------------------
    Plant(
        "c2c_keeps_read_noise",
        "the C2C sigma keeps the read noise in it",
        "hil/characterize/characterization.py",
        "c2c = np.sqrt(np.clip(sigma**2 - np.nan_to_num(read_var), 0.0, None))",
        "c2c = np.sqrt(np.clip(sigma**2, 0.0, None))",
        ("tests/test_characterize.py",),
    ),
    # -- safety limits ------------------------------------------------------------------------
    Plant(
        "set_compliance_unchecked",
        "the compliance is checked for RESET pulses only",
        "protocols/limits.py",
        "        if conductance_s is not None:\n            current = np.abs(amp)",
        "        if conductance_s is not None and amp < 0:\n            current = np.abs(amp)",
        (T_LIMITS,),
    ),
    Plant(
        "reset_compliance_unchecked",
        "the compliance is checked for SET pulses only",
        "protocols/limits.py",
        "        if conductance_s is not None:\n            current = np.abs(amp)",
        "        if conductance_s is not None and amp > 0:\n            current = np.abs(amp)",
        (T_LIMITS,),
    ),
    Plant(
        "run_budget_unchecked",
        "the per-device, per-run pulse budget is never checked",
        "protocols/limits.py",
        "        and run.size\n",
        "        and False\n",
        (T_LIMITS,),
    ),
    Plant(
        "half_select_unchecked",
        "the half-select limit under V/2 or V/3 biasing is never checked",
        "protocols/limits.py",
        "if half > limits.max_half_select_v:",
        "if False:",
        (T_LIMITS,),
    ),
    Plant(
        "limits_checked_after_sending",
        "a backend checks a plan against the limits after sending it, not before",
        "protocols/backend.py",
        "        check_plan(plan, self.limits, run_counts=self._pulse_counts)\n"
        "        if plan.is_empty:\n"
        "            return\n"
        "        self._apply(plan)\n",
        "        if plan.is_empty:\n"
        "            return\n"
        "        self._apply(plan)\n"
        "        check_plan(plan, self.limits, run_counts=self._pulse_counts)\n",
        (T_LIMITS,),
    ),
    Plant(
        "raise_without_allow_raise",
        "a run config raises a protocol limit without naming it in allow_raise",
        "protocols/limits.py",
        "            if name not in override.allow_raise:\n",
        "            if False:\n",
        (T_ENVELOPE,),
    ),
    Plant(
        "partial_override_drops_fields",
        "a partial limits override resets the fields it does not write to the defaults",
        "protocols/limits.py",
        "merged = SafetyLimits(**{**base.model_dump(), **values})",
        "merged = SafetyLimits(**values)",
        (T_ENVELOPE,),
    ),
    Plant(
        "read_voltage_unchecked",
        "the envelope's read voltage is not checked against the limits and the threshold",
        "protocols/envelope.py",
        "    check_read_voltage(read_v, limits, switching_v=switching_v, nominal_v=nominal)\n",
        "",
        ("tests/test_read_voltage_envelope.py",),
    ),
    Plant(
        "read_voltage_option_raises",
        "a backend read_v option may raise the protocol's read voltage",
        "protocols/envelope.py",
        "if read_override_v > read_v:",
        "if False:",
        (T_ENVELOPE,),
    ),
    # -- instruments --------------------------------------------------------------------------
    Plant(
        "b2900_not_zeroed_after_read",
        "the B2900 stays at the read voltage after a read, so the next relay close is hot",
        "drivers/scpi.py",
        "        SENS_CURR_TRIP,\n        set_cmd(SOUR_VOLT, 0.0),\n",
        "        SENS_CURR_TRIP,\n",
        ("tests/test_drivers_faults.py",),
    ),
    Plant(
        "smu1_not_zeroed_after_read",
        "the 4200A's SMU1 stays at the read voltage after a read, so the next relay close is hot",
        "drivers/source_4200a.py",
        "        finally:\n            self._setting(K.smu_force(0.0, self.compliance_a))\n",
        "        finally:\n            pass\n",
        ("tests/test_drivers_pmu.py",),
    ),
    Plant(
        "matrix_refused_close_ignored",
        "a 707B that refuses a close (error count after it) is not noticed",
        "drivers/matrix.py",
        "            if count:\n",
        "            if False:\n",
        ("tests/test_drivers_protocol.py",),
    ),
    Plant(
        "arc1_width_fixed_notation",
        "the ArC ONE pulse width is sent in fixed notation (90 ns becomes 0.000000)",
        "drivers/arc1.py",
        'return f"{value:.6e}"',
        'return f"{value:f}"',
        ("tests/test_arc1_protocol.py",),
    ),
    Plant(
        "sigterm_not_handled",
        "SIGTERM is not routed to the safe shutdown like SIGINT",
        "protocols/shutdown.py",
        'names = ("SIGINT", "SIGTERM", "SIGHUP")',
        'names = ("SIGINT", "SIGHUP")',
        ("tests/test_signals.py",),
    ),
    Plant(
        "cell_process_outlives_worker",
        "a sweep cell's process is not tied to its worker and runs on after the worker dies",
        "hil/sweep/cell_process.py",
        "    _die_with(int(sys.argv[1]))\n",
        "    pass\n",
        ("tests/test_sweep.py::test_a_worker_killed_mid_cell_loses_and_duplicates_no_cell",),
    ),
    Plant(
        "cell_process_keeps_dask_malloc",
        "a sweep cell's process inherits the Dask nanny's malloc trim threshold",
        "hil/sweep/cell_process.py",
        "if k not in MALLOC_VARS}",
        "if k}",
        ("tests/test_sweep_cell_process.py",),
    ),
    Plant(
        "emulator_pty_public_name",
        "the pulse-board emulator hands out its /dev/pts name, which the kernel gives to the "
        "next pty once it stops",
        "drivers/emu_serial.py",
        "            self.path = pty_link(self._slave)\n",
        "            self.path = os.ttyname(self._slave)\n",
        ("tests/test_pty_paths.py",),
    ),
)


# -- the copy -----------------------------------------------------------------------------------
def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name]


def make_copy(root: Path, files: Sequence[str], dest: Path) -> None:
    """The tracked files as they are in the working tree (a file deleted there is skipped)."""
    for name in files:
        src = root / name
        if not src.is_file() and not src.is_symlink():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)


def plant_into(copy: Path, plant: Plant) -> None:
    """Apply the edit; ValueError unless its old text occurs exactly once."""
    path = copy / plant.path
    if not path.is_file():
        raise ValueError(f"{plant.path} is not a tracked file")
    text = path.read_text(encoding="utf-8")
    found = text.count(plant.old)
    if found != 1:
        raise ValueError(f"the old text occurs {found} times in {plant.path}, not once")
    if plant.old == plant.new:
        raise ValueError("the edit changes nothing")
    path.write_text(text.replace(plant.old, plant.new), encoding="utf-8")


def child_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    before = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(copy) + (os.pathsep + before if before else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("MRNN_HIL_CRASH_AT", None)  # a crash point armed outside must not leak in
    env.pop("HYPOTHESIS_PROFILE", None)  # the suite as CI runs it (the derandomized profile)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_imports(copy: Path, env: dict[str, str]) -> None:
    """ValueError unless every package imports from the copy (not the installed tree)."""
    code = (
        "import importlib, sys\nfor n in sys.argv[1:]: print(importlib.import_module(n).__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *PACKAGES],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise ValueError(f"the packages do not import in the copy: {done.stderr.strip()[-300:]}")
    base = copy.resolve()
    for name, where in zip(PACKAGES, done.stdout.split(), strict=True):
        if not Path(where).resolve().is_relative_to(base):
            raise ValueError(f"{name} imports from {where}, not from the copy")


def check_targets(copy: Path, targets: Sequence[str]) -> None:
    for target in targets:
        if not (copy / target.split("::")[0]).exists():
            raise ValueError(f"target {target} is not in the tracked files")


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:200]
    tail = [line for line in output.splitlines() if line.strip()]
    return tail[-1][:200] if tail else ""


def run_pytest(copy: Path, targets: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*cmd, *targets],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    return done.returncode, done.stdout + done.stderr


# -- one run ----------------------------------------------------------------------------------
def run_one(
    root: Path, files: Sequence[str], plant: Plant | None, targets: Sequence[str]
) -> Outcome:
    """A plant (or the baseline, `plant=None`) in a fresh copy of the tree."""
    name = "baseline" if plant is None else plant.name
    t0 = time.perf_counter()
    copy = Path(tempfile.mkdtemp(prefix=f"planted-{name}-"))
    broken = "failed" if plant is None else "broken"

    def outcome(verdict: str, detail: str, output: str = "") -> Outcome:
        return Outcome(name, verdict, time.perf_counter() - t0, detail, output)

    try:
        make_copy(root, files, copy)
        env = child_env(copy)
        try:
            if plant is not None:
                plant_into(copy, plant)
            check_targets(copy, targets)
            check_imports(copy, env)
        except (ValueError, subprocess.TimeoutExpired) as exc:
            return outcome(broken, str(exc))
        try:
            code, output = run_pytest(copy, targets, env)
        except subprocess.TimeoutExpired:
            return outcome(broken, f"the tests did not end within {RUN_TIMEOUT_S:g} s")
        if plant is None:
            if code == 0:
                return outcome("passed", "", output)
            return outcome("failed", f"pytest exit {code}: {first_failure(output)}", output)
        if code == 0:
            return outcome("survived", "the target tests pass", output)
        if code in (1, 2):  # tests failed, or a module under test failed to import
            return outcome("caught", first_failure(output), output)
        return outcome("broken", f"pytest exit {code}: {first_failure(output)}", output)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def union(groups: Sequence[Sequence[str]]) -> list[str]:
    out: list[str] = []
    for group in groups:
        out += [t for t in group if t not in out]
    # a whole file already covers its node ids
    files = {t for t in out if "::" not in t}
    return [t for t in out if "::" not in t or t.split("::")[0] not in files]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python tests/planted_bugs.py",
        description="Plant known bugs one at a time and check that the tests catch each.",
    )
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these plants")
    ap.add_argument("--jobs", type=int, default=1, help="plants run at once (default 1)")
    ap.add_argument("--full", action="store_true", help="the whole suite for every plant")
    ap.add_argument("--list", action="store_true", help="list the plants and their targets")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unplanted run")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [p.name for p in PLANTS]
    if len(set(names)) != len(names):
        raise SystemExit("planted_bugs: two plants share a name")
    chosen = list(PLANTS)
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print(f"planted_bugs: no plant named {', '.join(unknown)}", file=sys.stderr)
            return 2
        chosen = [p for p in PLANTS if p.name in args.only]
    if args.list:
        for p in chosen:
            print(f"{p.name}: {p.what}\n    {p.path}; targets: {' '.join(p.targets)}")
        return 0

    def targets_of(p: Plant) -> list[str]:
        return ["tests"] if args.full else list(p.targets)

    t0 = time.perf_counter()
    files = tracked_files(ROOT)
    results: dict[str, Outcome] = {}
    lock = threading.Lock()

    def report(o: Outcome) -> None:
        with lock:
            results[o.name] = o
            print(f"{o.verdict.upper():9s} {o.name:38s} {o.seconds:7.1f} s  {o.detail}", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = []
        if not args.no_baseline:
            base = ["tests"] if args.full else union([p.targets for p in chosen])
            futures.append(pool.submit(run_one, ROOT, files, None, base))
        futures += [pool.submit(run_one, ROOT, files, p, targets_of(p)) for p in chosen]
        for future in as_completed(futures):
            report(future.result())

    summary: dict[str, object] = {p.name: results[p.name].verdict for p in chosen}
    verdicts = [results[p.name].verdict for p in chosen]
    counts = {v: verdicts.count(v) for v in ("caught", "survived", "broken")}
    summary.update(counts)
    baseline = "skipped" if args.no_baseline else results["baseline"].verdict
    summary["baseline"] = baseline
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    if baseline == "failed":
        print(
            "planted_bugs: the unplanted targets fail, so no plant result means anything:\n"
            + results["baseline"].output[-3000:],
            file=sys.stderr,
        )
    print(json.dumps(summary))
    return 1 if counts["survived"] or counts["broken"] or baseline == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
