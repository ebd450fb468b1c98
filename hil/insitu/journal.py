"""The run journal: an SQLite record of every pulse plan, written before and after it is sent.

Order per plan: `record_intent` (digest and counts, committed and fsynced) -> backend.apply ->
`mark_applied` (committed). A crash leaves at most one plan in state 'intent', which the resume
logic resolves against the backend. The journal runs in WAL mode. With sync="full" an intent
is fsynced before the call returns (synchronous=FULL for that commit), so no pulse is ever
sent that a power cut could erase from the journal; the other commits (applied marks,
metrics) use synchronous=NORMAL: they survive a killed process at once and reach the disk
with the next intent, and losing one to a power cut only leaves a plan in 'intent', which
resume resolves anyway. This keeps one fsync per plan.

A backend that tracks delivery (drivers/delivery.py) gives each plan a ticket (for the pulse
board: its batch numbers) that is journaled with the intent, together with the plan itself
while it is pending (the copy is dropped once the plan is marked applied), so that a resumed
run can ask the instrument what it applied and send exactly the rest. A run on a backend
without a snapshot keeps the copy of every plan (`keep=True`) until a checkpoint covers it
(`forget_plans`): a resume after a crash between a plan's applied mark and the next
checkpoint adds that plan's per-device counts to the run's pulse budget. Journals written
before these columns existed are upgraded in place on opening (the new columns are empty:
their pending plans resolve as before, to 'unknown').

Any failure to write (unwritable directory, full disk, I/O error) raises `JournalError`, a
one-line `InputError`, before the pulses that depended on it are sent.

The journal also keeps where the run came from (`record_origin`): the resolved config and
the text of its protocol file, each with a SHA-256 digest. A resume recomputes both and
`origin_changes` names every field that differs, so a run never continues under limits,
a scheme or a read voltage other than those it started with.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from protocols.errors import InputError
from protocols.plan import PulseGroup, PulsePlan, PulseShape

SyncMode = Literal["full", "normal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    seq INTEGER PRIMARY KEY,
    position INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    groups INTEGER NOT NULL,
    pulses INTEGER NOT NULL,
    set_pulses INTEGER NOT NULL,
    reset_pulses INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    energy_j REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('intent', 'applied', 'unknown')),
    t_intent REAL NOT NULL,
    t_applied REAL,
    replays INTEGER NOT NULL DEFAULT 0,
    delivery TEXT,
    plan BLOB
);
CREATE TABLE IF NOT EXISTS presentations (
    position INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL,
    pattern INTEGER NOT NULL,
    loss REAL NOT NULL,
    status TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    clipped INTEGER NOT NULL,
    pulses INTEGER NOT NULL,
    energy_j REAL NOT NULL,
    max_abs_dw REAL NOT NULL,
    plan_seq INTEGER,
    did_read INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
    epoch INTEGER PRIMARY KEY,
    loss REAL NOT NULL,
    accuracy TEXT NOT NULL,
    pulses INTEGER NOT NULL,
    energy_j REAL NOT NULL,
    refused INTEGER NOT NULL,
    stuck INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    t REAL NOT NULL
);
"""


_ADDED_COLUMNS = (("delivery", "TEXT"), ("plan", "BLOB"))


def plan_to_bytes(plan: PulsePlan) -> bytes:
    """A compact, exact, pickle-free copy of a plan (npz: shapes as JSON, counts as int64)."""
    head = {
        "rows": plan.rows,
        "cols": plan.cols,
        "bias": plan.bias,
        "groups": [[g.shape.amplitude_v, g.shape.width_s, g.parallel] for g in plan.groups],
    }
    counts = np.stack([g.counts for g in plan.groups]) if plan.groups else np.zeros((0, 1, 1))
    buf = io.BytesIO()
    np.savez_compressed(buf, head=np.array(json.dumps(head)), counts=counts.astype(np.int64))
    return buf.getvalue()


def plan_from_bytes(data: bytes) -> PulsePlan:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        head = json.loads(str(f["head"]))
        counts = np.asarray(f["counts"], dtype=np.int64)
    groups = tuple(
        PulseGroup(PulseShape(amplitude_v=a, width_s=w), counts[k], parallel=bool(par))
        for k, (a, w, par) in enumerate(head["groups"])
    )
    return PulsePlan(rows=head["rows"], cols=head["cols"], groups=groups, bias=head["bias"])


@dataclass(frozen=True)
class PendingDelivery:
    """A plan in 'intent' with what its backend needs to settle it."""

    ticket: dict[str, Any]
    plan: PulsePlan
    energy_j: float


class JournalError(InputError):
    """The journal could not be written; nothing that depended on it was sent."""


def digest_of(data: Any) -> str:
    """SHA-256 of plain data in canonical JSON (sorted keys): equal data, equal digest."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every field whose value differs between two plain-data trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(path)
            else:
                out.extend(changed_fields(old[key], new[key], path))
        return out
    return [] if old == new else [prefix or "(whole value)"]


def _shown(fields: list[str], limit: int = 8) -> str:
    more = f" (+{len(fields) - limit} more)" if len(fields) > limit else ""
    return ", ".join(fields[:limit]) + more


@dataclass(frozen=True)
class PlanRecord:
    seq: int
    position: int
    epoch: int
    kind: str
    digest: str
    pulses: int
    state: str
    replays: int


def _explain(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    low = text.lower()
    resume = f"; free space, then continue with `mrnn-hil train --resume {path.parent}`"
    if "full" in low:
        hint = "the disk (or the journal's size limit) is full" + resume
    elif "readonly" in low or "unable to open" in low or "permission" in low:
        hint = "the run directory is not writable"
    elif "disk i/o" in low:
        hint = (
            "the disk reported an I/O error (a full disk or a file-size limit does this)" + resume
        )
    else:
        hint = "the journal could not be written"
    return f"journal {path}: {hint} ({text})"


class Journal:
    """SQLite journal of a run (plans, per-presentation metrics, per-epoch metrics, events)."""

    def __init__(self, path: str | Path, *, sync: SyncMode = "full") -> None:
        self.path = Path(path)
        self.sync = sync
        self._forgotten_below = 0  # forget_plans has visited every seq below this
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._upgrade()
        except sqlite3.Error as exc:
            raise JournalError(_explain(exc, self.path)) from exc

    def _upgrade(self) -> None:
        """Add the delivery columns to a journal written before they existed."""
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(plans)")}
        for name, typ in _ADDED_COLUMNS:
            if name not in have:
                self._conn.execute(f"ALTER TABLE plans ADD COLUMN {name} {typ}")

    # -- plumbing ------------------------------------------------------------------------
    @contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        full = durable and self.sync == "full"
        try:
            if full:
                self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise JournalError(_explain(exc, self.path)) from exc
        finally:
            if full:
                self._conn.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta ----------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -- origin: what the run started with ------------------------------------------------
    def record_origin(self, config: dict[str, Any], protocol_text: str | None) -> None:
        """Keep the resolved config and the protocol file's text, with their digests."""
        values = {
            "config": config,
            "config_digest": digest_of(config),
            "protocol_text": protocol_text,
            "protocol_digest": None if protocol_text is None else text_digest(protocol_text),
        }
        with self._tx(durable=True) as c:
            c.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def has_origin(self) -> bool:
        return self.get_meta("config_digest") is not None

    def origin_changes(
        self,
        config: dict[str, Any],
        protocol_text: str | None,
        protocol_fields: Callable[[str], dict[str, Any]] | None = None,
    ) -> list[str]:
        """What differs between the recorded origin and `config` / `protocol_text`.

        Each entry names the changed fields (`limits.max_set_v`, `protocol limits.max_set_v`);
        `protocol_fields(text)` turns a protocol text into plain data for the field names.
        An empty list means the run may continue.
        """
        out: list[str] = []
        stored = self.get_meta("config")
        if digest_of(config) != self.get_meta("config_digest"):
            if isinstance(stored, dict) and digest_of(stored) == self.get_meta("config_digest"):
                out.append("config fields changed: " + _shown(changed_fields(stored, config)))
            else:
                out.append("the journal's copy of the config does not match its digest")
        old_text = self.get_meta("protocol_text")
        new_digest = None if protocol_text is None else text_digest(protocol_text)
        if new_digest != self.get_meta("protocol_digest"):
            fields: list[str] = []
            if protocol_fields is not None and old_text is not None and protocol_text is not None:
                try:
                    fields = changed_fields(
                        protocol_fields(old_text), protocol_fields(protocol_text)
                    )
                except InputError:
                    fields = []
            what = f" ({_shown(fields)})" if fields else ""
            out.append(f"the protocol file's content changed{what}")
        return out

    # -- plans ---------------------------------------------------------------------------
    def record_intent(
        self,
        seq: int,
        position: int,
        epoch: int,
        kind: str,
        plan: PulsePlan,
        energy_j: float,
        *,
        delivery: dict[str, Any] | None = None,
        keep: bool = False,
    ) -> None:
        """Durably record that `plan` is about to be sent (call before backend.apply).

        With a `delivery` ticket the plan itself is kept too, until it is marked applied;
        with `keep` it is kept until `forget_plans` drops it.
        """
        stored = delivery is not None or keep
        signed = [(g.shape.polarity, g.total) for g in plan.groups]
        set_p = sum(n for pol, n in signed if pol > 0)
        reset_p = sum(n for pol, n in signed if pol < 0)
        devices = int(np.count_nonzero(plan.counts_per_device()))
        with self._tx(durable=True) as c:
            c.execute(
                "INSERT INTO plans(seq, position, epoch, kind, digest, groups, pulses, set_pulses,"
                " reset_pulses, devices, energy_j, state, t_intent, delivery, plan) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?)",
                (
                    seq,
                    position,
                    epoch,
                    kind,
                    plan.digest(),
                    len(plan.groups),
                    set_p + reset_p,
                    set_p,
                    reset_p,
                    devices,
                    float(energy_j),
                    time.time(),
                    None if delivery is None else json.dumps(delivery),
                    plan_to_bytes(plan) if stored else None,
                ),
            )

    def mark_applied(self, seq: int, *, keep: bool = False) -> None:
        """The plan was delivered; its kept copy is dropped unless `keep`."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE plans SET state = 'applied', t_applied = ?, "
                "plan = CASE WHEN ? THEN plan ELSE NULL END WHERE seq = ?",
                (time.time(), int(keep), seq),
            )
            if cur.rowcount != 1:
                raise JournalError(f"journal {self.path}: no plan {seq} to mark applied")

    def note_replay(self, seq: int) -> None:
        """A plan re-sent after the backend was restored to a state from before it."""
        with self._tx() as c:
            c.execute(
                "UPDATE plans SET replays = replays + 1, state = 'applied', "
                "t_applied = COALESCE(t_applied, ?) WHERE seq = ?",
                (time.time(), seq),
            )

    def mark_unknown(self, seq: int) -> None:
        """A plan whose delivery neither the journal nor the backend can confirm."""
        with self._tx() as c:
            c.execute("UPDATE plans SET state = 'unknown' WHERE seq = ?", (seq,))

    def _stored_plan(self, seq: int, blob: bytes, digest: str) -> PulsePlan:
        """The kept copy of plan `seq`, refused unless it is the plan whose digest the intent
        recorded (a damaged or altered copy must never be sent or counted)."""
        try:
            plan = plan_from_bytes(blob)
        except (ValueError, KeyError, OSError, TypeError) as exc:
            raise JournalError(
                f"journal {self.path}: plan {seq}: the journaled copy cannot be read ({exc})"
            ) from exc
        if plan.digest() != digest:
            raise JournalError(
                f"journal {self.path}: plan {seq}: the journaled copy does not match its "
                "digest; the run cannot be resumed safely"
            )
        return plan

    def kept_plan(self, seq: int) -> tuple[PulsePlan, float] | None:
        """The kept copy of plan `seq` and its energy estimate, if the journal holds one
        (checked against the plan's digest)."""
        row = self._conn.execute(
            "SELECT plan, energy_j, digest FROM plans WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return self._stored_plan(seq, row[0], row[2]), float(row[1])

    def forget_plans(self, below_seq: int) -> None:
        """Drop the kept copies of plans before `below_seq` (a checkpoint now covers them).

        Only the rows since the previous call are visited (a range of the primary key), so
        a checkpoint after every presentation stays O(plans since the last one).
        """
        with self._tx() as c:
            c.execute(
                "UPDATE plans SET plan = NULL WHERE seq >= ? AND seq < ? AND plan IS NOT NULL",
                (self._forgotten_below, below_seq),
            )
        self._forgotten_below = max(self._forgotten_below, below_seq)

    def pending_delivery(self, seq: int) -> PendingDelivery | None:
        """The ticket and plan of plan `seq` if it is in 'intent' with both journaled."""
        row = self._conn.execute(
            "SELECT delivery, plan, energy_j, digest FROM plans WHERE seq = ? AND state = 'intent'",
            (seq,),
        ).fetchone()
        if row is None or row[0] is None or row[1] is None:
            return None
        plan = self._stored_plan(seq, row[1], row[3])
        try:
            ticket = json.loads(row[0])
        except ValueError as exc:
            raise JournalError(
                f"journal {self.path}: plan {seq}: the journaled ticket cannot be read ({exc})"
            ) from exc
        return PendingDelivery(ticket, plan, float(row[2]))

    def plan(self, seq: int) -> PlanRecord | None:
        row = self._conn.execute(
            "SELECT seq, position, epoch, kind, digest, pulses, state, replays FROM plans "
            "WHERE seq = ?",
            (seq,),
        ).fetchone()
        return None if row is None else PlanRecord(*row)

    def plans(self) -> list[PlanRecord]:
        rows = self._conn.execute(
            "SELECT seq, position, epoch, kind, digest, pulses, state, replays FROM plans "
            "ORDER BY seq"
        ).fetchall()
        return [PlanRecord(*r) for r in rows]

    def pending(self) -> list[PlanRecord]:
        return [p for p in self.plans() if p.state == "intent"]

    def max_seq(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) FROM plans").fetchone()
        return -1 if row[0] is None else int(row[0])

    # -- metrics -------------------------------------------------------------------------
    def record_presentation(
        self,
        *,
        position: int,
        epoch: int,
        pattern: int,
        loss: float,
        status: str,
        accepted: bool,
        clipped: bool,
        pulses: int,
        energy_j: float,
        max_abs_dw: float,
        plan_seq: int | None,
        did_read: bool,
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO presentations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    position,
                    epoch,
                    pattern,
                    float(loss) if np.isfinite(loss) else -1.0,
                    status,
                    int(accepted),
                    int(clipped),
                    int(pulses),
                    float(energy_j),
                    float(max_abs_dw) if np.isfinite(max_abs_dw) else -1.0,
                    plan_seq,
                    int(did_read),
                ),
            )

    def record_epoch(
        self,
        *,
        epoch: int,
        loss: float,
        accuracy: dict[str, float],
        pulses: int,
        energy_j: float,
        refused: int,
        stuck: int,
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (epoch, float(loss), json.dumps(accuracy), pulses, float(energy_j), refused, stuck),
            )

    def record_event(self, position: int, kind: str, message: str) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO events(position, kind, message, t) VALUES (?, ?, ?, ?)",
                (position, kind, message, time.time()),
            )

    def epochs(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT epoch, loss, accuracy, pulses, energy_j, refused, stuck FROM epochs "
            "ORDER BY epoch"
        ).fetchall()
        return [
            {
                "epoch": r[0],
                "loss": r[1],
                "accuracy": json.loads(r[2]),
                "pulses": r[3],
                "energy_j": r[4],
                "refused": r[5],
                "stuck": r[6],
            }
            for r in rows
        ]

    def events(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT position, kind, message FROM events ORDER BY id"
        ).fetchall()
        return [{"position": r[0], "kind": r[1], "message": r[2]} for r in rows]

    def presentation_table(self) -> dict[str, np.ndarray]:
        rows = self._conn.execute(
            "SELECT position, epoch, loss, accepted, pulses, energy_j FROM presentations "
            "ORDER BY position"
        ).fetchall()
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
        keys = ("position", "epoch", "loss", "accepted", "pulses", "energy_j")
        return {k: arr[:, i] for i, k in enumerate(keys)}

    def totals(self) -> dict[str, float]:
        row = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(pulses), 0), COALESCE(SUM(energy_j), 0) FROM plans "
            "WHERE state = 'applied'"
        ).fetchone()
        presented, refused, by_limit = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(accepted = 0), 0), "
            "COALESCE(SUM(status = 'limit_violation'), 0) FROM presentations"
        ).fetchone()
        return {
            "plans": int(row[0]),
            "pulses": int(row[1]),
            "energy_j": float(row[2]),
            "presentations": int(presented),
            "refused_updates": int(refused),
            "refused_by_limit": int(by_limit),
        }
