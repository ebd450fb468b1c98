"""In-situ training: eq. 20 delivered to a crossbar as pulses, one presentation at a time.

Per presentation: read the conductances (every k presentations; in between, a tracked
estimate moved by the response model), compute W from the differential pairs, relax the
forward and side networks (in software on W, or on W measured through the backend's analog
product), ask `presentation_update` for dW (the same code as the float trainer), split dW
into per-device dG, plan pulses with the configured scheme, check the safety limits, journal
the plan, apply it, mark it applied, and optionally read back.

Durability. Every plan goes journal-intent -> apply -> journal-applied. Checkpoints (atomic
files) hold the controller state and, when the backend has one, its exact snapshot. On resume
a snapshot backend is restored to the checkpoint and the loop re-runs from there: every plan
it regenerates must have the digest the journal recorded (anything else is an error), the
journal row is marked applied (and its replay counted) instead of duplicated, so each
journaled plan is in the final device state exactly once and the final state is bit-identical
to an uninterrupted run. A backend without a snapshot is checkpointed after every
presentation. A backend that tracks delivery (drivers/delivery.py, the pulse board) gets
each plan's ticket (its batch numbers) journaled with the intent; on resume a plan left in
'intent' is settled through it: applied -> marked applied; partly applied -> only the
missing batches are sent; not applied -> sent. Otherwise the plan is marked 'unknown'. Either
way the loop continues from a full read (it is closed-loop, so training stays correct, and
the journal stays honest). Without a snapshot the journal keeps each plan's counts until a
checkpoint covers them, so plans sent after the last checkpoint (applied, or unknown and
so possibly applied) still count in the per-run pulse budget.

The training inputs come from one generator seeded like the float trainer's (W0, then each
epoch's order and each presentation's corruption, in the same order), so both trainers see
the same inputs for one seed; its state is checkpointed. The schemes' stochastic rounding
and the accuracy curve draw from generators derived from (seed, stream, position), so they
need no state; the backend's own randomness is inside its snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.delivery import Ticket, TracksDelivery
from hil.insitu.journal import Journal
from hil.insitu.mapping import (
    DifferentialMapping,
    StuckDetector,
    WeightMapping,
    stuck_after_programming,
    stuck_report,
)
from hil.insitu.pulse_planner import UpdatePlanner
from hil.insitu.run_config import RunConfig
from hil.insitu.rundir import RunDir
from hil.network.evaluation import pineda_recall, score
from hil.network.float_training import TrainConfig
from hil.network.float_training import initial_weights as float_initial_weights
from hil.network.learning import UpdateResult, band_mask, presentation_update
from hil.network.patterns import corrupt, test_set
from protocols.backend import CrossbarBackend
from protocols.crashpoints import crash_point
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits
from protocols.plan import PulsePlan

Array = NDArray[np.float64]
log = logging.getLogger(__name__)

# Independent random streams, derived from (seed, stream, index).
STREAM_SCHEME = 3
STREAM_CURVE_EVAL = 4


def stream(seed: int, kind: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, kind, index])


class ResumeMismatch(InputError):
    """A resumed run regenerated a plan that differs from the journaled one."""


class RunStopped(RuntimeError):
    """The run stopped cleanly on a refused update, as configured."""


@dataclass
class Totals:
    pulses: int = 0
    set_pulses: int = 0
    reset_pulses: int = 0
    energy_j: float = 0.0
    plans: int = 0
    refused: int = 0
    reads: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class EpochAcc:
    loss: float = 0.0
    count: int = 0
    pulses: int = 0
    energy_j: float = 0.0
    refused: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class ControllerState:
    """Everything besides the backend needed to continue a run bit-identically."""

    position: int
    seq: int
    g_est: Array
    run_counts: NDArray[np.int64]
    totals: Totals = field(default_factory=Totals)
    epoch_acc: EpochAcc = field(default_factory=EpochAcc)
    stopped: str | None = None


def _train_config(cfg: RunConfig) -> TrainConfig:
    return TrainConfig(w_init=cfg.training.w0_range, seed=cfg.seed, rule=cfg.rule, epochs=1)


def n_units(patterns: Array) -> int:
    return int(np.asarray(patterns).shape[1])


def initial_weights(n: int, cfg: RunConfig) -> Array:
    """W0 exactly as the float trainer draws it for the same seed (first draws of rng(seed))."""
    return float_initial_weights(n, _train_config(cfg), np.random.default_rng(cfg.seed))


def recall_accuracy(
    W: Array, patterns: Array, p: float, samples: int, rng: np.random.Generator, cfg: RunConfig
) -> float:
    """Fraction of corrupted samples relaxed to within MSE 0.1 of their clean pattern."""
    corrupted, labels = test_set(patterns, samples, p, rng)
    v = pineda_recall(W, corrupted, v0=cfg.rule.v0).state
    ok, _ = score(v, patterns[labels])
    return float(ok.mean())


class InSituTrainer:
    """The training loop on one backend, journaled into one run directory."""

    def __init__(
        self,
        cfg: RunConfig,
        backend: CrossbarBackend,
        rundir: RunDir,
        journal: Journal,
        patterns: Array,
        planner: UpdatePlanner,
        mapping: WeightMapping,
        limits: SafetyLimits,
        *,
        on_progress: Callable[[ControllerState, int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self.rundir = rundir
        self.journal = journal
        self.patterns = np.asarray(patterns, dtype=np.float64)
        self.planner = planner
        self.mapping = mapping
        self.limits = limits
        self.on_progress = on_progress
        self.n = self.patterns.shape[1]
        self.snapshots = backend.info().supports_snapshot
        self.mask = (
            band_mask(self.n, cfg.rule.band_radius) if cfg.rule.band_radius is not None else None
        )
        shape = mapping.shape
        self.stuck = StuckDetector(
            shape,
            mapping.g_min_s,
            mapping.g_max_s,
            min_expected=cfg.stuck.min_expected,
            ratio=cfg.stuck.ratio,
            strikes=cfg.stuck.strikes,
        )
        self.state = ControllerState(
            position=0,
            seq=0,
            g_est=np.zeros(shape),
            run_counts=np.zeros(shape, dtype=np.int64),
        )
        copies = cfg.training.copies
        self.rule = (
            cfg.rule.model_copy(update={"eta": cfg.rule.eta / copies}) if copies > 1 else cfg.rule
        )
        # The training stream mirrors the float trainer's exactly: one generator seeded with
        # the run seed draws W0, then each epoch's order and each presentation's corruption,
        # so that for one seed both trainers see the same inputs. Its state is checkpointed.
        self.train_rng = np.random.default_rng(cfg.seed)
        self.w0 = float_initial_weights(n_units(patterns), _train_config(cfg), self.train_rng)
        self.epoch_order = np.arange(self.per_epoch)
        self.replay_until = -1
        self.replay_position = -1

    # -- sizes ---------------------------------------------------------------------------
    @property
    def per_epoch(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def total_positions(self) -> int:
        return self.per_epoch * self.cfg.training.epochs

    # -- sending plans ---------------------------------------------------------------------
    def send(self, plan: PulsePlan, kind: str, g_before: Array) -> None:
        """Journal, apply, mark applied: the one path by which pulses leave.

        Every plan arrives checked against the limits by its scheme (at the conductances it
        expects to reach, with this run's pulse counts); the backend checks it once more
        before the first byte is sent.
        """
        st = self.state
        if plan.is_empty:
            return
        seq = st.seq
        energy = plan.energy_estimate_j(g_before)
        replay = seq <= self.replay_until
        if replay:
            record = self.journal.plan(seq)
            if record is None or record.digest != plan.digest():
                raise ResumeMismatch(
                    f"resume diverged from the journal at plan {seq}: the regenerated plan "
                    "does not match the journaled one; the run cannot be resumed bit-identically"
                )
        else:
            tracker = self._tracker()
            ticket = None if tracker is None else tracker.delivery_ticket(plan).to_json()
            self.journal.record_intent(
                seq, st.position, st.position // self.per_epoch, kind, plan, energy,
                delivery=ticket, keep=not self.snapshots,
            )  # fmt: skip
            crash_point("plan.intent")
        self.backend.apply(plan)
        crash_point("plan.applied")
        if replay:
            self.journal.note_replay(seq)
        else:
            self.journal.mark_applied(seq, keep=not self.snapshots)
        self._account(plan, energy)

    def _tracker(self) -> TracksDelivery | None:
        """The backend, if it can settle a journaled plan after a crash (not when restoring)."""
        if self.snapshots or not isinstance(self.backend, TracksDelivery):
            return None
        return self.backend

    def _account(self, plan: PulsePlan, energy: float) -> None:
        """Count a delivered plan in the run's totals and per-device pulse counts."""
        st = self.state
        counts = plan.counts_per_device()
        st.run_counts += counts
        st.seq += 1
        set_p = sum(g.total for g in plan.groups if g.shape.polarity > 0)
        total = plan.total_pulses
        st.totals.pulses += total
        st.totals.set_pulses += set_p
        st.totals.reset_pulses += total - set_p
        st.totals.energy_j += energy
        st.totals.plans += 1
        st.epoch_acc.pulses += total
        st.epoch_acc.energy_j += energy

    def read(self) -> Array:
        self.state.totals.reads += 1
        return self.backend.read()

    # -- setup -----------------------------------------------------------------------------
    def program_initial(self) -> None:
        """Write W0 to the array (write-verify) and take the first read; position 0."""
        w0 = self.w0
        target = self.mapping.targets(w0)
        g = self.read()
        g_start = g.copy()
        if self.cfg.programming.method == "write_verify":
            g = self.planner.program(
                target,
                g,
                tolerance=self.cfg.programming.tolerance,
                max_iterations=self.cfg.programming.max_iterations,
                send=lambda plan, g_before: self.send(plan, "program", g_before),
                read=self.read,
            )
        if self.cfg.stuck.detect:
            tol = self.cfg.programming.tolerance
            self.stuck.stuck |= stuck_after_programming(
                g_start, g, target, self.mapping.g_min_s, self.mapping.g_max_s, max(tol, 0.05)
            )
            self.stuck.last_read = g.copy()
        self.state.g_est = g
        self.journal.set_meta(
            "w0_rms_error", float(np.sqrt(np.mean((self.mapping.weights(g) - w0) ** 2)))
        )

    # -- one presentation ------------------------------------------------------------------
    def _weights_for_dynamics(self, g: Array) -> Array:
        return self.tie(self._measured_weights(g))

    def tie(self, W: Array) -> Array:
        """The network's effective weights: (W + W^T)/2 when weights are tied."""
        if self.cfg.mapping.tie_symmetric and self.cfg.rule.symmetric:
            return 0.5 * (W + W.T)
        return W

    def _measured_weights(self, g: Array) -> Array:
        if not self.cfg.loop.analog_mvm or not isinstance(self.mapping, DifferentialMapping):
            return self.mapping.weights(g)
        v_read = self.backend.read_v  # the protocol's read voltage, checked by the backend
        probes = np.zeros((self.n, self.mapping.shape[1]))
        idx = np.arange(self.n)
        probes[idx, self.mapping.plus_cols] = v_read
        probes[idx, self.mapping.minus_cols] = -v_read
        currents = self.backend.mvm(probes, transpose=True)  # (n probes, rows)
        return np.asarray(currents.T / (v_read * self.mapping.g_scale), dtype=np.float64)

    def _presentation_inputs(self, position: int) -> tuple[int, Array, Array]:
        """Pattern index, input and target of a presentation (copies rows in denoising).

        Draws from the training generator in the float trainer's order: the epoch's order at
        its first presentation, then one corruption per presentation.
        """
        tr = self.cfg.training
        k = position % self.per_epoch
        if k == 0:
            self.epoch_order = (
                self.train_rng.permutation(self.per_epoch)
                if tr.order == "shuffled"
                else np.arange(self.per_epoch)
            )
        idx = int(self.epoch_order[k])
        target = np.broadcast_to(self.patterns[idx], (tr.copies, self.n))
        if tr.mode == "denoising" and tr.p_train > 0:
            return idx, corrupt(target, tr.p_train, self.train_rng), target
        return idx, np.array(target), target

    def step(self) -> UpdateResult:
        st = self.state
        pos = st.position
        did_read = pos % self.cfg.loop.read_every == 0 or not np.any(st.g_est)
        if did_read:
            g = self.read()
            if self.cfg.stuck.detect:
                newly = self.stuck.observe(g)
                if newly.any() and pos > self.replay_position:
                    self.journal.record_event(
                        pos, "stuck", f"{int(newly.sum())} device(s) newly detected as stuck"
                    )
            st.g_est = g
        g = st.g_est
        W = self._weights_for_dynamics(g)
        k, inp, target = self._presentation_inputs(pos)
        res = presentation_update(W, inp, target, self.rule, mask=self.mask)
        dW = res.dW
        accepted = res.accepted and bool(np.all(np.isfinite(dW)))
        status: str = res.status if np.all(np.isfinite(dW)) else "non_finite"
        pulses_before = st.totals.pulses
        energy_before = st.totals.energy_j
        plan_seq: int | None = None
        if accepted:
            dG = self.mapping.request(dW, g, self.stuck.stuck if self.cfg.stuck.detect else None)
            try:
                plan_seq = st.seq
                g_new = self.planner.update(
                    dG,
                    g,
                    rng=stream(self.cfg.seed, STREAM_SCHEME, pos),
                    send=lambda plan, g_before: self.send(plan, "update", g_before),
                    read=self.read,
                    exclude=self.stuck.stuck if self.cfg.stuck.detect else None,
                )
            except LimitViolation as exc:
                accepted = False
                status = "limit_violation"
                plan_seq = None
                if pos > self.replay_position:
                    self.journal.record_event(pos, "refused", f"plan refused: {exc}")
                g_new = g
            else:
                if self.cfg.stuck.detect:
                    self.stuck.add_expected(g, g_new)
                if self.cfg.loop.verify:
                    g_read = self.read()
                    if pos > self.replay_position:
                        err = float(np.sqrt(np.mean((g_read - g_new) ** 2)))
                        self.journal.record_event(
                            pos, "verify", f"rms |G - expected| = {err:.3e} S"
                        )
                    g_new = g_read
            st.g_est = g_new
            if plan_seq == st.seq:
                plan_seq = None  # nothing was sent
        if not accepted:
            st.totals.refused += 1
            st.epoch_acc.refused += 1
            if status != "limit_violation" and pos > self.replay_position:
                self.journal.record_event(
                    pos, "refused", f"update {status} refused (no pulses sent)"
                )
        loss = res.loss if np.isfinite(res.loss) else float("nan")
        st.epoch_acc.loss += loss if np.isfinite(loss) else 0.0
        st.epoch_acc.count += 1
        self.journal.record_presentation(
            position=pos,
            epoch=pos // self.per_epoch,
            pattern=k,
            loss=loss,
            status=status,
            accepted=accepted,
            clipped=res.clipped,
            pulses=st.totals.pulses - pulses_before,
            energy_j=st.totals.energy_j - energy_before,
            max_abs_dw=float(np.max(np.abs(dW))) if np.all(np.isfinite(dW)) else float("inf"),
            plan_seq=plan_seq,
            did_read=did_read,
        )
        st.position += 1
        if not accepted:
            cfg = self.cfg.loop
            if cfg.on_bad_update == "stop" or (
                cfg.max_refused is not None and st.totals.refused >= cfg.max_refused
            ):
                st.stopped = f"stopped at presentation {pos}: update {status} refused"
        return res

    # -- epochs, checkpoints -----------------------------------------------------------------
    def end_epoch(self, epoch: int) -> None:
        st = self.state
        acc: dict[str, float] = {}
        ev = self.cfg.evaluation
        last = epoch == self.cfg.training.epochs - 1
        if (epoch + 1) % ev.every_epochs == 0 or last or epoch == 0:
            W = self.tie(self.mapping.weights(st.g_est))
            for p in ev.p:
                acc[f"{p:.2f}"] = recall_accuracy(
                    W,
                    self.patterns,
                    p,
                    ev.curve_samples,
                    stream(self.cfg.seed, STREAM_CURVE_EVAL, epoch * 100 + round(p * 100)),
                    self.cfg,
                )
        if acc:
            self.save_conductance_snapshot(epoch + 1)
        ea = st.epoch_acc
        self.journal.record_epoch(
            epoch=epoch,
            loss=ea.loss / max(ea.count, 1),
            accuracy=acc,
            pulses=ea.pulses,
            energy_j=ea.energy_j,
            refused=ea.refused,
            stuck=int(self.stuck.stuck.sum()),
        )
        st.epoch_acc = EpochAcc()

    def save_conductance_snapshot(self, epochs_done: int) -> None:
        """The tracked conductances after `epochs_done` epochs, kept for the pictures and the
        export (float32, one file per accuracy-curve epoch; never pruned like checkpoints)."""
        st = self.state
        path = self.rundir.checkpoint_dir / f"conductance-{st.position:010d}.npz"
        self.rundir.save_npz(
            path,
            {
                "conductance_s": st.g_est.astype(np.float32),
                "position": np.asarray(st.position),
                "epochs": np.asarray(epochs_done),
            },
        )

    def checkpoint(self) -> None:
        st = self.state
        arrays: dict[str, NDArray[Any]] = {
            "g_est": st.g_est,
            "run_counts": st.run_counts,
            **self.stuck.state(),
        }
        if self.planner.wv_target is not None:
            arrays["wv_target"] = self.planner.wv_target
        arrays["epoch_order"] = self.epoch_order
        meta: dict[str, Any] = {
            "train_rng": self.train_rng.bit_generator.state,
            "position": st.position,
            "seq": st.seq,
            "totals": st.totals.to_dict(),
            "epoch_acc": st.epoch_acc.to_dict(),
            "stopped": st.stopped,
            "backend": self.backend.snapshot() if self.snapshots else None,
        }
        self.rundir.save_checkpoint(st.position, arrays, meta)
        if not self.snapshots:  # the checkpoint's run counts now hold the kept plans
            self.journal.forget_plans(st.seq)

    def load(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        st = self.state
        st.position = int(meta["position"])
        st.seq = int(meta["seq"])
        st.g_est = np.asarray(arrays["g_est"], dtype=np.float64).copy()
        st.run_counts = np.asarray(arrays["run_counts"], dtype=np.int64).copy()
        st.totals = Totals(**meta["totals"])
        st.epoch_acc = EpochAcc(**meta["epoch_acc"])
        st.stopped = meta.get("stopped")
        self.stuck.load(arrays)
        self.train_rng.bit_generator.state = meta["train_rng"]
        self.epoch_order = np.asarray(arrays["epoch_order"]).copy()
        wv = arrays.get("wv_target")
        self.planner.wv_target = None if wv is None else np.asarray(wv, dtype=np.float64).copy()
        if self.snapshots and meta.get("backend") is not None:
            self.backend.restore(meta["backend"])

    # -- the run ---------------------------------------------------------------------------
    def start(self) -> None:
        """A fresh run: program W0 and checkpoint position 0."""
        self.program_initial()
        self.save_conductance_snapshot(0)
        self.checkpoint()

    def resume(self) -> str:
        """Continue from the latest checkpoint; returns a one-line account of what was done."""
        found = self.rundir.latest_checkpoint()
        last_seq = self.journal.max_seq()
        if found is None:
            # Killed before the first checkpoint: start again from the fresh backend.
            if self.snapshots:
                self.replay_until = last_seq
                self.replay_position = 10**12
                self.start()
                self.replay_position = -1
                return "restarted from the beginning (no checkpoint yet); initial plans replayed"
            # An instrument cannot be restored, but programming W0 is closed loop: settle the
            # journaled plans (their pulses count in the budget), then program again from a
            # fresh read of the array. Nothing is re-sent blind.
            note = self._resolve_without_snapshot(last_seq)
            self.state.position = 0
            self.journal.record_event(0, "resume", "W0 programming restarted from a full read")
            self.start()
            return f"W0 programming restarted from a full read (no checkpoint yet); {note}"
        arrays, meta = found
        self.load(arrays, meta)
        table = self.journal.presentation_table()
        self.replay_position = int(table["position"].max()) if table["position"].size else -1
        if self.snapshots:
            self.replay_until = last_seq
            return (
                f"restored backend snapshot at presentation {self.state.position}; "
                f"{max(last_seq - self.state.seq + 1, 0)} journaled plan(s) re-sent after restore"
            )
        start = self.state.position
        note = self._resolve_without_snapshot(last_seq)
        self._skip_interrupted(start)
        return note

    def _skip_interrupted(self, start: int) -> None:
        """Close the presentations a crash interrupted after their plans were settled.

        The rest of such a presentation is skipped, but its inputs are drawn, so the
        training stream stays the one an uninterrupted run draws; and when it was the last
        of its epoch, the epoch is recorded as the loop would have recorded it.
        """
        st = self.state
        for pos in range(start, st.position):
            self._presentation_inputs(pos)
        if st.position > start and st.position % self.per_epoch == 0:
            self.end_epoch(st.position // self.per_epoch - 1)

    def _resolve_without_snapshot(self, last_seq: int) -> str:
        st = self.state
        notes = []
        for record in self.journal.plans():
            if record.seq < st.seq:
                continue
            if record.state == "intent":
                notes.append(self._settle(record.seq))
            elif (kept := self.journal.kept_plan(record.seq)) is not None:
                # Sent after the checkpoint: the pulse budget counts it (an unconfirmed plan
                # too, as it may have been delivered); totals count only what was applied.
                if record.state == "applied":
                    self._account(*kept)
                else:
                    st.run_counts += kept[0].counts_per_device()
            st.seq = record.seq + 1
            st.position = max(st.position, record.position + 1)
        st.g_est = self.read()
        self.stuck.last_read = st.g_est.copy()
        self.journal.record_event(st.position, "resume", "; ".join(notes) or "clean resume")
        return "resumed from a full read; " + ("; ".join(notes) or "no pending plan")

    def _settle(self, seq: int) -> str:
        """Resolve a plan left in 'intent' through the backend, or mark it unknown (the
        journal refuses a kept copy that does not match the plan's digest)."""
        tracker = self._tracker()
        pending = self.journal.pending_delivery(seq) if tracker is not None else None
        if tracker is None or pending is None:
            kept = self.journal.kept_plan(seq)
            if kept is not None:  # possibly delivered: the pulse budget counts it
                self.state.run_counts += kept[0].counts_per_device()
            self.journal.mark_unknown(seq)
            return f"plan {seq} could not be confirmed (marked unknown)"
        ticket = Ticket.from_json(pending.ticket, f"journal {self.journal.path}: plan {seq}")
        found = tracker.complete_delivery(pending.plan, ticket)
        self.journal.mark_applied(seq, keep=True)
        self._account(pending.plan, pending.energy_j)
        return f"plan {seq}: {found.describe()}"

    def run(self) -> ControllerState:
        st = self.state
        every = self.cfg.run.checkpoint_every if self.snapshots else 1
        total = self.total_positions
        while st.position < total and st.stopped is None:
            self.step()
            epoch_done = st.position % self.per_epoch == 0
            if epoch_done:
                self.end_epoch(st.position // self.per_epoch - 1)
            if self.on_progress is not None:
                self.on_progress(st, total)
            if epoch_done or st.position % every == 0 or st.stopped is not None:
                self.checkpoint()
        return st

    def final_state(self) -> dict[str, NDArray[Any]]:
        g = self.read()
        g_plus, g_minus = self.mapping.split(g)
        return {
            "conductance_s": g,
            "g_plus_s": g_plus,
            "g_minus_s": g_minus,
            "weights": self.tie(self.mapping.weights(g)),
            "weights_raw": self.mapping.weights(g),
            "weights_estimate": self.tie(self.mapping.weights(self.state.g_est)),
            "pulse_counts": self.state.run_counts,
            "stuck": self.stuck.stuck,
            "g_scale": np.asarray(self.mapping.g_scale),
        }

    def stuck_summary(self, g: Array) -> dict[str, object]:
        return stuck_report(self.mapping, self.stuck.stuck, g)
