"""The sweep engine: cells as Dask tasks, on an embedded local cluster or an existing one.

By default an embedded `dask.distributed.LocalCluster` with one single-threaded worker process
per core; with a scheduler address the same cells go to an existing cluster (`dask scheduler`
and `dask worker` by hand, or `dask-jobqueue` on SLURM/PBS). The sweep directory is durable:

    sweep.json      the expanded cells (what `--resume` continues)
    status.json     per cell: status, attempts, errors, result (rewritten atomically)
    cells/<name>/   each cell's run directory, as `mrnn-hil train` writes it
    locks/<name>.lock  held by the process running the cell

A cell that raises, or whose worker is lost, is recorded with its error and submitted again,
up to `retries` more times; the other cells go on. A cell's task is idempotent (see
`hil.sweep.cell`), so a task that Dask re-runs after a lost worker, or a cell a killed sweep
left half-done, resumes from its run's latest checkpoint instead of starting over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from hil.insitu.compare import is_finished, report_metrics
from hil.insitu.rundir import RunDir, write_atomic
from hil.sweep.cell import THREAD_VARS, CellBusy
from hil.sweep.cell_process import run_cell_in_process
from hil.sweep.spec import Cell, SweepSpec
from protocols.errors import InputError

log = logging.getLogger(__name__)

#: The embedded cluster's workers only wait for their cell processes; with Dask's defaults
#: (a stack profiler every 10 ms, an event-loop tick every 20 ms, memory and system monitors)
#: each took up to 14 % of a core that the cells, one per core, then lacked (docs/sweeps.md).
#: None of these is needed to run cells; a dashboard still works, with coarser system plots
#: and no profiles.
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}
#: Seconds before a cell that another process holds is submitted again.
BUSY_WAIT_S = 2.0
#: Seconds between looks at finished cells, and between progress polls of the scheduler.
#: Every cell is submitted at once, so the workers never wait for these; they only cost
#: CPU that the cells, one per core, would otherwise have.
IDLE_POLL_S = 0.2
PROGRESS_POLL_S = 1.0
#: Seconds without any worker before the sweep says so.
NO_WORKER_WARN_S = 10.0


@dataclass
class CellRecord:
    """What the engine knows of one cell."""

    status: str = "pending"  # pending | submitted | done | failed
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class Progress:
    done: int
    running: int
    failed: int
    total: int
    eta_s: float | None


@dataclass
class SweepOutcome:
    out: Path
    spec: SweepSpec
    records: dict[str, CellRecord]
    startup_s: float = 0.0
    engine_s: float = 0.0
    skipped: int = 0

    @property
    def failed(self) -> list[str]:
        return [name for name, r in self.records.items() if r.status == "failed"]


class SweepDir:
    """Paths and durable files of one sweep."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()

    @property
    def spec_path(self) -> Path:
        return self.path / "sweep.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    def cell_dir(self, cell: Cell) -> Path:
        return self.path / "cells" / cell.name

    def lock(self, cell: Cell) -> Path:
        return self.path / "locks" / f"{cell.name}.lock"

    def prepare(self, spec: SweepSpec | None, resume: bool) -> SweepSpec:
        """The sweep to run: a new one written down, or the stored one of a resumed sweep."""
        if resume:
            if not self.spec_path.is_file():
                raise InputError(f"--resume: {self.path} holds no sweep (no sweep.json)")
            stored = SweepSpec.from_json(json.loads(self.spec_path.read_text()))
            if spec is not None and spec.digest() != stored.digest():
                raise InputError(
                    f"--resume: {spec.source} does not describe the sweep in {self.path} "
                    "(its cells differ); resume without the file, or use a new --out"
                )
            return stored
        if spec is None:
            raise InputError("a sweep file is needed (or --resume with the sweep's --out)")
        if self.spec_path.exists():
            raise InputError(
                f"{self.path} already holds a sweep; continue it with --resume or choose "
                "another --out"
            )
        try:
            (self.path / "cells").mkdir(parents=True, exist_ok=True)
            (self.path / "locks").mkdir(exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {self.path}: {exc.strerror or exc}") from None
        write_atomic(self.spec_path, (json.dumps(spec.to_json(), indent=1) + "\n").encode())
        return spec

    def load_records(self, spec: SweepSpec) -> dict[str, CellRecord]:
        records = {c.name: CellRecord() for c in spec.cells}
        if self.status_path.is_file():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                for name, data in json.loads(self.status_path.read_text())["cells"].items():
                    if name in records:
                        records[name] = CellRecord(**data)
        return records

    def save_records(self, records: dict[str, CellRecord]) -> None:
        data = {"cells": {name: asdict(r) for name, r in records.items()}}
        write_atomic(self.status_path, (json.dumps(data, indent=1) + "\n").encode())


def single_thread_environ() -> dict[str, str]:
    return {var: "1" for var in THREAD_VARS}


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A client of the given scheduler, or of an embedded cluster of single-threaded workers."""
    import distributed  # noqa: F401  (its import sets its loggers' levels: silence after it)

    with _silenced(), contextlib.ExitStack() as stack:
        yield stack.enter_context(_client(scheduler, workers))


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        with contextlib.closing(client):
            yield client
        return
    n = workers or os.cpu_count() or 1
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.update(single_thread_environ())
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **QUIET_WORKERS}):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # a free port: never clash with another cluster
            silence_logs=logging.ERROR,
        )
    with contextlib.closing(cluster), Client(cluster) as client:
        client.register_plugin(OrphanGuard())
        yield client


class OrphanGuard(WorkerPlugin):
    """A worker plugin for the embedded cluster: a worker process whose parent (the sweep
    command) died exits at once instead of finishing its cell unattended."""

    name = "mrnn-hil-orphan-guard"

    def setup(self, worker: Any) -> None:
        import threading

        parent = os.getppid()

        def watch() -> None:
            while True:
                time.sleep(0.5)
                if os.getppid() != parent:
                    os._exit(3)

        threading.Thread(target=watch, name=self.name, daemon=True).start()


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Dask's own INFO chatter (and its tracebacks of connections closed on shutdown) off,
    unless this module logs at INFO (`mrnn-hil -v`)."""
    logger = logging.getLogger("distributed")
    level = logger.level
    if log.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _running(client: Any, ours: set[str]) -> int:
    """Cells executing now: each worker runs at most `nthreads` of the tasks it was given."""
    threads = client.nthreads()
    return sum(
        min(len(set(keys) & ours), threads.get(addr, 1))
        for addr, keys in client.processing().items()
    )


def _error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    kind = getattr(exc, "kind", None) or type(exc).__name__  # a cell's own, from its process
    return f"{kind}: {text}"


def run_sweep(
    spec: SweepSpec | None,
    out: str | Path,
    *,
    resume: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> SweepOutcome:
    """Run (or continue) a sweep to the end; the results are written by the caller."""
    sd = SweepDir(out)
    spec = sd.prepare(spec, resume)
    tries = 1 + (spec.retries if retries is None else retries)
    records = sd.load_records(spec)
    skipped = 0
    for cell in spec.cells:
        rec = records[cell.name]
        if is_finished(sd.cell_dir(cell)):
            if rec.status != "done" or rec.result is None:
                report = RunDir.open(sd.cell_dir(cell)).read_json("report.json")
                rec.result = {**report_metrics(report), "wall_s": report["wall_s_this_session"]}
                rec.status = "done"
            skipped += 1
        else:
            rec.status, rec.result = "pending", None
            if resume:
                rec.attempts, rec.errors = 0, []
    sd.save_records(records)
    outcome = SweepOutcome(sd.path, spec, records, skipped=skipped)
    todo = [c for c in spec.cells if records[c.name].status == "pending"]
    if not todo:
        return outcome
    t0 = time.perf_counter()
    with dask_client(scheduler, workers) as client:
        outcome.startup_s = time.perf_counter() - t0
        _drive(client, sd, spec, todo, records, tries, on_progress, on_event)
    outcome.engine_s = time.perf_counter() - t0
    return outcome


def _drive(
    client: Any,
    sd: SweepDir,
    spec: SweepSpec,
    todo: list[Cell],
    records: dict[str, CellRecord],
    tries: int,
    on_progress: Callable[[Progress], None] | None,
    on_event: Callable[[str], None] | None,
) -> None:
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures: dict[str, Cell] = {}
    live: dict[str, Any] = {}

    def submit(cell: Cell) -> Any:
        rec = records[cell.name]
        rec.attempts += 1
        rec.status = "submitted"
        key = f"mrnn-hil-cell-{cell.name}-{token}-{rec.attempts}"
        fut = client.submit(
            run_cell_in_process,
            str(sd.cell_dir(cell)),
            cell.config,
            str(sd.lock(cell)),
            key=key,
            pure=False,
            retries=0,
        )
        futures[fut.key] = cell
        live[fut.key] = fut
        return fut

    waiting: list[tuple[float, Cell]] = []  # cells another process holds: submit again later
    started = time.monotonic()
    done_now = 0
    total = len(spec.cells)
    ac = as_completed([submit(c) for c in todo])
    sd.save_records(records)
    last_poll = 0.0
    running = 0
    warned = False

    def report_progress() -> None:
        nonlocal running
        running = min(running, len(futures))
        if on_progress is None:
            return
        done = sum(r.status == "done" for r in records.values())
        failed = sum(r.status == "failed" for r in records.values())
        left = total - done - failed
        eta = (time.monotonic() - started) / done_now * left if done_now else None
        on_progress(Progress(done, running, failed, total, eta))

    try:
        while not ac.is_empty() or waiting:
            now = time.monotonic()
            due = [c for t, c in waiting if t <= now]
            waiting[:] = [(t, c) for t, c in waiting if t > now]
            for cell in due:
                records[cell.name].attempts -= 1  # waiting for the other process is no attempt
                ac.add(submit(cell))
            batch = [] if ac.is_empty() else ac.next_batch(block=False)
            if not batch:
                now = time.monotonic()
                if now - last_poll > PROGRESS_POLL_S:
                    last_poll = now
                    running = _running(client, set(futures))
                    if not warned and now - started > NO_WORKER_WARN_S and not client.nthreads():
                        warned = True
                        if on_event is not None:
                            on_event(f"no Dask worker is connected to {client.scheduler.address}"
                                     " yet; the cells wait for one")  # fmt: skip
                    report_progress()
                time.sleep(IDLE_POLL_S)
                continue
            for fut in batch:
                cell = futures.pop(fut.key)
                live.pop(fut.key, None)
                rec = records[cell.name]
                try:
                    result = fut.result()
                except CellBusy as exc:
                    if on_event is not None:
                        on_event(f"cell {cell.name}: {exc}; waiting for it")
                    waiting.append((time.monotonic() + BUSY_WAIT_S, cell))
                except Exception as exc:
                    rec.errors.append(f"attempt {rec.attempts}: {_error_text(exc)}")
                    again = rec.attempts < tries
                    if on_event is not None:
                        what = "retrying" if again else "giving up"
                        on_event(
                            f"cell {cell.name} failed (attempt {rec.attempts} of {tries}; "
                            f"{what}): {_error_text(exc)}"
                        )
                    if again:
                        ac.add(submit(cell))
                    else:
                        rec.status = "failed"
                else:
                    rec.status, rec.result = "done", result
                    done_now += 1
                finally:
                    fut.release()
            sd.save_records(records)
            report_progress()
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(live.values()))
        raise
