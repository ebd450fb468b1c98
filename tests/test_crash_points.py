"""SIGKILL `mrnn-hil train` at each deterministic crash point of a plan, resume, and check
that nothing was lost or doubled.

The crash points (`protocols/crashpoints.py`, armed by `MRNN_HIL_CRASH_AT`) sit where a kill
from outside almost never lands: right after a plan's intent is journaled, between two groups
(batches) of a plan, after the plan is applied but before it is marked, and half-way through
a checkpoint file. Each test runs the real command line as a child process, kills it at each
of the four points in turn (the next kill lands in the resumed process), checks what the
journal and the instrument hold after each kill, then lets a last `--resume` finish and
compares the whole run with an uninterrupted one:

- simulator: final.npz bit-identical, the same plans (digests, pulses) each applied once;
- pulse board: the board's own log holds every batch once, in order, as the journal's
  tickets say; the emulated array is noiseless, so the run is also identical to an
  uninterrupted one, batch for batch, down to the final conductances;
- VISA station: it cannot say what it applied, so each interrupted plan is journaled
  `unknown` and never sent again; the station's own pulse log, device by device, is what the
  journal says was delivered (the applied plans plus exactly the part of each interrupted
  plan that was fired before the kill).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
from insitu_support import final_arrays, small_config

from drivers.emu_array import UNBOUNDED, make_array
from drivers.emu_board import BoardCore
from drivers.emu_scpi import Station, Train
from drivers.emu_serial import SerialEmulator
from drivers.emu_tcp import ScpiEmulator
from hil.insitu.journal import Journal
from hil.insitu.rundir import RunDir
from protocols.crashpoints import ENV
from protocols.plan import PulsePlan
from sim_backend import SimulatedCrossbar

PATTERNS = "[a]\n#.#\n.#.\n#.#\n\n[b]\n.#.\n###\n.#.\n\n[c]\n##.\n#..\n.##\n"
N = 9  # 3 x 3 glyphs: a 9 x 18 array, three presentations per epoch
PER_EPOCH = 3


def train(args: list[str], crash: str | None = None) -> subprocess.CompletedProcess[str]:
    """`mrnn-hil train ARGS` in a child process, armed to die at `crash` when given."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if crash is not None:
        env[ENV] = crash
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", "train", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def killed(done: subprocess.CompletedProcess[str], where: str) -> None:
    assert done.returncode == -signal.SIGKILL, f"{where}: {done.returncode} {done.stderr}"


def rows(run: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{run / 'journal.sqlite'}?mode=ro", uri=True)) as con:
        return con.execute(sql).fetchall()


def plans(run: Path) -> list[tuple[int, int, str, str, int, int, int]]:
    """(seq, position, kind, state, pulses, groups, replays) of every journaled plan."""
    return rows(
        run,
        "SELECT seq, position, kind, state, pulses, groups, replays FROM plans ORDER BY seq",
    )


def signatures(run: Path) -> list[tuple[int, str, int]]:
    return rows(run, "SELECT seq, digest, pulses FROM plans ORDER BY seq")


def resume_events(run: Path) -> list[str]:
    return [m for (m,) in rows(run, "SELECT message FROM events WHERE kind = 'resume' ORDER BY id")]


def epochs(run: Path) -> list[int]:
    return [e for (e,) in rows(run, "SELECT epoch FROM epochs ORDER BY epoch")]


def temporaries(run: Path) -> list[str]:
    return sorted(p.name for d in (run, run / "checkpoints") for p in d.glob(".*.tmp"))


def in_flight(run: Path) -> tuple[int, int, str]:
    """(seq, position, kind) of the one plan a kill left between intent and applied."""
    pending = [(s, pos, k) for s, pos, k, state, *_ in plans(run) if state == "intent"]
    assert len(pending) == 1, plans(run)
    assert pending[0][0] == plans(run)[-1][0]  # the newest plan: no plan was sent after it
    return pending[0]


def first_update(run: Path, at_or_after: int, last_of_epoch: bool = False) -> int:
    """Seq of the first update plan at presentation >= `at_or_after` (optionally the last
    presentation of an epoch), in a journal of an uninterrupted run."""
    for seq, pos, kind, *_ in plans(run):
        last = pos % PER_EPOCH == PER_EPOCH - 1
        if kind == "update" and pos >= at_or_after and (last or not last_of_epoch):
            return seq
    raise AssertionError(f"no update plan at presentation >= {at_or_after}")


def config(tmp: Path, **over: Any) -> Path:
    patterns = tmp / "three.txt"
    patterns.write_text(PATTERNS)
    training = {"patterns": str(patterns), "epochs": 3}
    return small_config(tmp, training=training, **over)


# -- simulator ---------------------------------------------------------------------------------


def replays_pending(run: Path) -> list[tuple[int, int, str, str, int, int, int]]:
    """The journaled plans a resume re-sends after restoring the latest checkpoint."""
    found = RunDir(run).latest_checkpoint()
    assert found is not None
    return [p for p in plans(run) if p[0] >= int(found[1]["seq"])]


def test_crash_points_on_the_simulator_resume_bit_identical(tmp_path: Path) -> None:
    cfg = config(tmp_path, run={"checkpoint_every": 4})
    ref = tmp_path / "ref"
    done = train(["--config", str(cfg), "--out", str(ref)])
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"

    # 1. After the intent of the update plan of presentation 1 is journaled.
    target = first_update(ref, 1)
    killed(train(["--config", str(cfg), "--out", str(run)], f"plan.intent:{target + 1}"), "intent")
    assert in_flight(run)[0] == target

    # 2. After the next new plan is applied, before it is marked (the resumed process first
    # re-sends the journaled plans since its checkpoint; they pass the point too).
    replayed = replays_pending(run)
    killed(train(["--resume", str(run)], f"plan.applied:{len(replayed) + 1}"), "applied")
    seq, *_ = in_flight(run)
    assert seq == target + 1
    _, _, _, state, _, _, replays = plans(run)[target]
    assert (state, replays) == ("applied", 1)  # re-sent once after the restore, and marked

    # 3. Between two groups of a later plan.
    replayed = replays_pending(run)
    boundaries = sum(groups - 1 for *_, groups, _ in replayed)
    killed(train(["--resume", str(run)], f"plan.group:{boundaries + 1}"), "group")
    assert in_flight(run)[0] > seq

    # 4. Half-way through the first checkpoint the next process writes.
    killed(train(["--resume", str(run)], "checkpoint.write"), "checkpoint")
    assert [n for n in temporaries(run) if n.startswith(".ckpt-")], temporaries(run)

    done = train(["--resume", str(run)])
    assert done.returncode == 0, done.stderr
    assert temporaries(run) == []
    want, got = final_arrays(ref), final_arrays(run)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert signatures(run) == signatures(ref)
    assert {state for _, _, _, state, *_ in plans(run)} == {"applied"}
    assert epochs(run) == epochs(ref) == [0, 1, 2]


# -- pulse board -------------------------------------------------------------------------------


def pending_ticket(run: Path, seq: int) -> dict[str, Any]:
    with Journal(run / "journal.sqlite") as journal:
        pending = journal.pending_delivery(seq)
    assert pending is not None
    return pending.ticket


def noiseless_array() -> SimulatedCrossbar:
    """EpiRAM devices without read noise: the same pulses give the same array, however
    often it was read meanwhile (a resume reads it once more than an uninterrupted run)."""
    array = SimulatedCrossbar(N, 2 * N, preset="epiram", seed=5, readout__read_sigma=0.0)
    array.limits = UNBOUNDED
    return array


def board_core() -> BoardCore:
    return BoardCore(noiseless_array())


def board_config(tmp: Path, port: str) -> Path:
    return config(tmp, backend={"kind": "serial", "port": port, "options": {"batch_groups": 1}})


def test_crash_points_on_the_pulse_board_apply_every_batch_once(tmp_path: Path) -> None:
    ref_core, ref = board_core(), tmp_path / "ref"
    with SerialEmulator(ref_core) as emu:
        done = train(["--config", str(board_config(tmp_path, emu.path)), "--out", str(ref)])
    assert done.returncode == 0, done.stderr

    core, run = board_core(), tmp_path / "run"
    fired: list[int] = []
    with SerialEmulator(core) as emu:
        cfg = board_config(tmp_path, emu.path)
        # 1. Intent journaled, nothing of the plan sent.
        target = first_update(ref, 1)
        killed(train(["--config", str(cfg), "--out", str(run)], f"plan.intent:{target + 1}"), "i")
        seq, *_ = in_flight(run)
        first = pending_ticket(run, seq)
        assert seq == target
        assert core.last_batch == first["first"] - 1  # the board has none of it

        # 2. Applied, not marked: the plan of the last presentation of epoch 0, so the
        # resume that settles it also ends the epoch.
        target = first_update(ref, 2, last_of_epoch=True)
        killed(train(["--resume", str(run)], f"plan.applied:{target - seq}"), "applied")
        seq, pos, _ = in_flight(run)
        assert (seq, pos % PER_EPOCH) == (target, PER_EPOCH - 1)
        assert 0 not in epochs(run)

        # 3. Between the two batches (SET, RESET) of the next plan.
        killed(train(["--resume", str(run)], "plan.group"), "group")
        seq, *_ = in_flight(run)
        ticket = pending_ticket(run, seq)
        assert len(ticket["pulses"]) == 2
        assert core.last_batch == ticket["first"]  # the first batch only
        fired.append(core.last_batch)

        # 4. Half-way through the first checkpoint of the next process.
        killed(train(["--resume", str(run)], "checkpoint.write"), "checkpoint")
        assert temporaries(run)
        assert {state for _, _, _, state, *_ in plans(run)} == {"applied"}

        done = train(["--resume", str(run)])
        assert done.returncode == 0, done.stderr
    assert temporaries(run) == []

    # The board's own log: every batch once, in order; the journal's tickets name exactly
    # those batches with exactly their pulses; every plan applied.
    log = core.log.entries
    assert [e.batch for e in log] == list(range(1, len(log) + 1))
    journaled: list[tuple[int, int]] = []
    for ticket, pulses, state in rows(
        run, "SELECT delivery, pulses, state FROM plans ORDER BY seq"
    ):
        t = json.loads(ticket)
        assert sum(t["pulses"]) == pulses and state == "applied"
        journaled += [(t["first"] + k, p) for k, p in enumerate(t["pulses"])]
    assert journaled == [(e.batch, e.pulses) for e in log]
    notes = resume_events(run)
    assert "not applied; sent now" in notes[0]
    assert "applied before the interruption" in notes[1]
    assert f"partly applied (up to {fired[0]})" in notes[2]
    assert notes[3] == "clean resume"

    # And it is the uninterrupted run, batch for batch: same plans, same batches, same array.
    assert [(e.batch, e.pulses, e.digest) for e in log] == [
        (e.batch, e.pulses, e.digest) for e in ref_core.log.entries
    ]
    assert signatures(run) == signatures(ref)
    np.testing.assert_array_equal(core.array.read(), ref_core.array.read())
    np.testing.assert_array_equal(
        final_arrays(run)["conductance_s"], final_arrays(ref)["conductance_s"]
    )
    np.testing.assert_array_equal(
        final_arrays(run)["pulse_counts"], final_arrays(ref)["pulse_counts"]
    )
    assert epochs(run) == epochs(ref) == [0, 1, 2]


# -- VISA station ------------------------------------------------------------------------------


def per_device(trains: list[Train]) -> np.ndarray:
    out = np.zeros((N, 2 * N), dtype=np.int64)
    for t in trains:
        out[t.row, t.col] += t.count
    return out


def fired_part(plan: PulsePlan, groups: int | None) -> np.ndarray:
    """Pulses per device of the first `groups` groups of `plan` (all when None)."""
    out = np.zeros(plan.shape, dtype=np.int64)
    for group in plan.groups[:groups]:
        out += group.counts
    return out


def applied_counts(run: Path) -> int:
    return int(rows(run, "SELECT COALESCE(SUM(pulses), 0) FROM plans WHERE state='applied'")[0][0])


def kept(run: Path, seq: int) -> PulsePlan:
    with Journal(run / "journal.sqlite") as journal:
        found = journal.kept_plan(seq)
    assert found is not None
    return found[0]


def test_crash_points_on_the_visa_station_never_resend_an_unconfirmed_plan(
    tmp_path: Path,
) -> None:
    station = Station(make_array(N, 2 * N, preset="epiram", seed=5), min_width_s=1e-9)
    run = tmp_path / "run"
    # Pulses the journal counts as possibly delivered but the station never fired (the
    # unsent part of each interrupted plan), per device.
    unfired = np.zeros((N, 2 * N), dtype=np.int64)
    fired_unknown = 0
    with ScpiEmulator(station) as emu:
        options = {
            "matrix_resource": emu.matrix_resource,
            "min_width_s": 1e-9,
            "array": f"{N}x{2 * N}",
        }
        cfg = config(
            tmp_path,
            backend={"kind": "visa", "resource": emu.smu_resource,
                     "options": options},
        )  # fmt: skip
        args = ["--config", str(cfg), "--out", str(run)]

        def check_kill(point: str, groups: int | None) -> None:
            nonlocal unfired, fired_unknown
            seq, _, kind = in_flight(run)
            assert kind == "update"
            plan = kept(run, seq)
            part = fired_part(plan, groups)
            if point == "plan.group":
                assert len(plan.groups) >= 2 and 0 < part.sum() < plan.total_pulses
            unfired += plan.counts_per_device() - part
            fired_unknown += int(part.sum())
            # The station fired every applied plan and exactly `part` of this one.
            assert sum(t.count for t in station.log) == applied_counts(run) + fired_unknown

        # The first process dies at its 8th plan (past the few plans of W0's programming);
        # each resumed one at its first new plan.
        for arm, groups in (("plan.intent:8", 0), ("plan.group", 1), ("plan.applied", None)):
            point = arm.partition(":")[0]
            killed(train(args, arm), point)
            check_kill(point, groups)
            args = ["--resume", str(run)]
        killed(train(args, "checkpoint.write"), "checkpoint")
        assert temporaries(run)
        done = train(args)
        assert done.returncode == 0, done.stderr
    assert temporaries(run) == []

    states = [state for _, _, _, state, *_ in plans(run)]
    assert states.count("unknown") == 3 and set(states) == {"applied", "unknown"}
    assert all(replays == 0 for *_, replays in plans(run))  # nothing was sent twice
    notes = resume_events(run)
    assert [("marked unknown" in n) for n in notes] == [True, True, True, False]
    # Device by device, the station fired what the journal counts, minus what the
    # interrupted plans never fired: no plan resent, none lost.
    counts = final_arrays(run)["pulse_counts"]
    np.testing.assert_array_equal(per_device(station.log) + unfired, counts)
    assert sum(t.count for t in station.log) == applied_counts(run) + fired_unknown
    assert epochs(run) == [0, 1, 2]
