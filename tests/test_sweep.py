"""`mrnn-hil sweep`: checked sweep files, the embedded Dask cluster, a real `dask scheduler`
with two `dask worker` processes, a worker killed mid-cell, a sweep killed and resumed.

Every Dask process a test starts runs in its own process group and is killed at the end,
also when the test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from insitu_support import cli
from sweep_support import (
    ENV,
    children,
    dask_cluster,
    finals,
    finish,
    kill_group,
    launch,
    read_csv,
    status,
    sweep_cmd,
    sweep_file,
)

from hil.sweep.spec import load_sweep
from protocols.errors import InputError


def journal_plans(run: Path) -> list[tuple[int, str, str]]:
    con = sqlite3.connect(run / "journal.sqlite")
    try:
        return con.execute("SELECT seq, digest, state FROM plans ORDER BY seq").fetchall()
    finally:
        con.close()


def without_wall(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The CSV rows less the wall time, the one column that depends on the machine's load."""
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def assert_same_sweep(got: Path, ref: Path) -> None:
    assert without_wall(read_csv(got / "sweep.csv")) == without_wall(read_csv(ref / "sweep.csv"))
    a, b = finals(got), finals(ref)
    assert sorted(a) == sorted(b)
    for cell, arrays in b.items():
        assert sorted(a[cell]) == sorted(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(a[cell][key], value, err_msg=f"cell {cell}: {key}")
        # every plan of the cell exactly once, in the same order, applied
        plans = journal_plans(got / "cells" / cell)
        assert [(s, d) for s, d, _ in plans] == [
            (s, d) for s, d, _ in journal_plans(ref / "cells" / cell)
        ]
        assert {state for _, _, state in plans} == {"applied"}


# -- the sweep file -----------------------------------------------------------------------------
def write(tmp: Path, data: dict[str, object]) -> Path:
    path = tmp / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("grid", "cells", "named"),
    [
        ({"mapping.wmax": [0.5]}, None, "'mapping.wmax'"),
        (None, [{"schem.kind": "manhattan"}], "'schem.kind'"),
        ({"mapping.w_max.x": [1]}, None, "'mapping.w_max.x'"),
        ({"mapping.w_max": [0.5, -1.0]}, None, "mapping.w_max"),
        ({"backend.preset": ["epiram", "no_such_device"]}, None, "backend.preset"),
        ({"backend.options.c2c__sigmaa": [0.01]}, None, "backend.options.c2c__sigmaa"),
        ({"backend.options.c2c__sigma": [-0.5]}, None, "backend.options.c2c__sigma"),
        (None, [{"scheme.kind": "manhattan", "scheme.max_iterations": 3}], "max_iterations"),
        ({"training.epochs": [3, "many"]}, None, "training.epochs"),
    ],
)
def test_unknown_paths_and_bad_values_are_refused_naming_the_path(
    tmp_path: Path, grid: dict[str, list[object]] | None, cells: list[object] | None, named: str
) -> None:
    data = yaml.safe_load(sweep_file(tmp_path).read_text())
    data.pop("grid")
    data.pop("cells")
    if grid is not None:
        data["grid"] = grid
    if cells is not None:
        data["cells"] = cells
    with pytest.raises(InputError) as err:
        load_sweep(write(tmp_path, data))
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_a_bad_sweep_file_is_one_line_exit_2_and_nothing_is_created(tmp_path: Path) -> None:
    data = yaml.safe_load(sweep_file(tmp_path).read_text())
    data["grid"]["mapping.w_max"] = [0.5, 0.0]
    out = tmp_path / "out"
    done = cli("sweep", str(write(tmp_path, data)), "--out", str(out), "--quiet")
    assert done.returncode == 2
    assert "mapping.w_max" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_grid_and_cells_expand_to_their_product_with_files_relative_to_the_sweep(
    tmp_path: Path,
) -> None:
    path = sweep_file(tmp_path, seeds=(0, 1, 2))
    spec = load_sweep(path)
    assert spec.paths == ("seed", "scheme.kind")
    assert [c.name for c in spec.cells] == [f"{i:03d}" for i in range(6)]
    assert [(c.values["scheme.kind"], c.values["seed"]) for c in spec.cells] == [
        (k, s) for k in ("proportional", "manhattan") for s in (0, 1, 2)
    ]
    cell = spec.cells[4]
    assert cell.config["seed"] == 1 and cell.config["scheme"] == {"kind": "manhattan"}
    assert cell.config["training"]["patterns"] == str(tmp_path / "glyphs.txt")
    assert cell.config["training"]["epochs"] == 3  # the base is kept


def test_the_repo_sweep_files_check_and_the_table_file_runs_the_table_configs() -> None:
    import importlib.util

    from hil.insitu.run_config import validate_config

    root = Path(__file__).resolve().parent.parent
    assert len(load_sweep(root / "docs" / "sweeps" / "example.yaml").cells) == 12
    spec = load_sweep(root / "docs" / "sweeps" / "in-situ-table.yaml")
    where = importlib.util.spec_from_file_location(
        "insitu_table", root / "bench" / "insitu_table.py"
    )
    assert where is not None and where.loader is not None
    table = importlib.util.module_from_spec(where)
    where.loader.exec_module(table)
    wanted = {
        (preset, scheme): validate_config(
            {**table.base_config(100, 0), "backend": {"preset": preset}, "scheme": cfg}
        )
        for preset in ("ideal", "epiram", "soft_bounds", "taox_hfox", "alox_hfo2")
        for scheme, cfg in table.SCHEMES.items()
    }
    got = {
        (c.values["backend.preset"], c.values["scheme.kind"]): validate_config(c.config)
        for c in spec.cells
    }
    assert got == wanted  # the same 15 runs as docs/in-situ.md's table, config for config


# -- the embedded cluster, and a sweep killed and resumed ----------------------------------------
@dataclass(frozen=True)
class Reference:
    file: Path
    out: Path
    plans: int


def plans_so_far(out: Path) -> int:
    """Plans journaled by the cells of a sweep in progress."""
    total = 0
    for journal in (out / "cells").glob("*/journal.sqlite") if (out / "cells").exists() else []:
        with contextlib.suppress(sqlite3.Error):  # being created
            total += len(journal_plans(journal.parent))
    return total


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """An uninterrupted sweep with no engine option: the embedded cluster, by default."""
    tmp = tmp_path_factory.mktemp("embedded")
    path = sweep_file(tmp, epochs=8)
    out = tmp / "ref"
    proc = launch(*sweep_cmd(str(path), "--out", str(out), "--quiet"))
    try:
        code, _, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 0, err
    return Reference(path, out, plans_so_far(out))


def test_the_embedded_cluster_runs_by_default_on_single_threaded_worker_processes(
    embedded: Reference,
) -> None:
    rows = read_csv(embedded.out / "sweep.csv")
    assert [r["cell"] for r in rows] == ["000", "001", "002", "003"]
    assert list(rows[0])[:3] == ["cell", "seed", "scheme.kind"]
    assert all(r["status"] == "complete" and int(r["pulses"]) > 0 for r in rows)
    assert {c for c in rows[0] if "accuracy" in c} == {"accuracy_p0.10", "accuracy_p0.20"}
    for key in ("energy_j", "refused", "stuck", "wall_s"):
        assert key in rows[0]
    cells = status(embedded.out)
    # worker processes (one per core by default), single-threaded, none of them the driver
    pids = {c["result"]["pid"] for c in cells.values()}
    assert len(pids) >= 1 and os.getpid() not in pids
    assert {c["result"]["omp_num_threads"] for c in cells.values()} == {"1"}
    for name in cells:
        run = embedded.out / "cells" / name
        for f in ("config.json", "journal.sqlite", "final.npz", "report.md"):
            assert (run / f).is_file(), f"{name}: {f}"
    summary = read_csv(embedded.out / "summary.csv")
    assert [(s["scheme.kind"], s["n"]) for s in summary] == [
        ("proportional", "2"),
        ("manhattan", "2"),
    ]
    mean = float(summary[0]["pulses_mean"])
    assert mean == pytest.approx(np.mean([int(r["pulses"]) for r in rows[:2]]))
    assert float(summary[0]["pulses_sd"]) == pytest.approx(
        np.std([int(r["pulses"]) for r in rows[:2]], ddof=1)
    )
    report = (embedded.out / "report.md").read_text()
    assert "sweep.png" in report and " ± " in report
    assert (embedded.out / "sweep.png").stat().st_size > 10_000


def test_a_sweep_killed_at_random_moments_resumes_to_the_uninterrupted_result(
    tmp_path: Path, embedded: Reference
) -> None:
    rng = random.Random(20261201)
    kills = 0
    for trial, wanted in enumerate((2,)):
        out = tmp_path / f"killed-{trial}"
        done_kills = 0
        while True:
            fresh = not (out / "sweep.json").exists()
            args = [str(embedded.file), "--out", str(out), "--quiet"]
            proc = launch(*sweep_cmd(*args, *([] if fresh else ["--resume"])))
            try:
                if done_kills < wanted:
                    # a random moment: once a random number of plans is journaled (0: while
                    # the cluster starts), plus a random fraction of a presentation
                    target = rng.randint(plans_so_far(out), embedded.plans - 1)
                    deadline = time.monotonic() + 180
                    while proc.poll() is None and time.monotonic() < deadline:
                        if plans_so_far(out) >= target:
                            break
                        time.sleep(0.01)
                    time.sleep(rng.uniform(0.0, 0.03))
                    if proc.poll() is None:
                        kill_group(proc)  # the sweep and its cluster, at once
                        done_kills += 1
                        continue
                code, _, err = finish(proc)
            finally:
                kill_group(proc)
            assert code == 0, err
            break
        kills += done_kills
        assert_same_sweep(out, embedded.out)
    assert kills >= 2  # the sweeps really were interrupted


def test_a_failed_cell_is_recorded_retried_and_the_others_complete(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, epochs=2, seeds=(0,), retries=1)
    out = tmp_path / "out"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "001").write_text("not a directory")  # cell 001 cannot make its run
    proc = launch(*sweep_cmd(str(path), "--out", str(out), "--workers", "1", "--quiet"))
    try:
        code, stdout, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 1
    cells = status(out)
    assert cells["000"]["status"] == "done"
    assert cells["001"]["status"] == "failed" and cells["001"]["attempts"] == 2
    assert len(cells["001"]["errors"]) == 2 and "cells/001" in cells["001"]["errors"][0]
    assert "cell 001 failed" in stdout and "Failed cells" in (out / "report.md").read_text()
    rows = read_csv(out / "sweep.csv")
    assert [(r["cell"], r["status"]) for r in rows] == [("000", "complete"), ("001", "failed")]
    # fix the cause and resume: only the failed cell runs, the finished one is skipped
    (out / "cells" / "001").unlink()
    proc = launch(*sweep_cmd("--out", str(out), "--resume", "--workers", "1", "--quiet"))
    try:
        code, stdout, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 0, err
    assert "1 finished before" in stdout
    cells = status(out)
    assert (
        cells["001"]["result"]["how"] == "started"
        and cells["000"]["result"]["pid"] != (cells["001"]["result"]["pid"])
    )
    assert [r["status"] for r in read_csv(out / "sweep.csv")] == ["complete", "complete"]


def test_a_cell_another_process_holds_is_waited_for_not_failed(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, epochs=2, seeds=(0,), retries=0)
    out = tmp_path / "out"
    (out / "locks").mkdir(parents=True)
    held = os.open(out / "locks" / "000.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a task still running elsewhere would
    os.write(held, b"4242\n")
    proc = launch(*sweep_cmd(str(path), "--out", str(out), "--workers", "1"))
    try:
        deadline = time.monotonic() + 120
        while not status_has(out, "001", "done") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None  # still waiting for cell 000
        os.ftruncate(held, 0)
        fcntl.flock(held, fcntl.LOCK_UN)
        code, _, err = finish(proc)
    finally:
        os.close(held)
        kill_group(proc)
    assert code == 0, err
    assert "already being run by process 4242; waiting for it" in err
    cells = status(out)
    assert cells["000"]["status"] == "done" and cells["000"]["attempts"] == 1
    assert cells["000"]["errors"] == []


def status_has(out: Path, cell: str, state: str) -> bool:
    try:
        return bool(status(out)[cell]["status"] == state)
    except (OSError, ValueError, KeyError):
        return False


# -- an existing cluster: `dask scheduler` + two `dask worker` processes ------------------------
def test_a_scheduler_without_workers_is_reported_while_the_cells_wait(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, epochs=2, seeds=(0,))
    with dask_cluster(tmp_path, workers=0) as (address, _):
        log = tmp_path / "stderr.txt"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                sweep_cmd(str(path), "--scheduler", address, "--out", str(tmp_path / "o")),
                stdout=subprocess.DEVNULL, stderr=err, env=ENV, start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while "no Dask worker" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.2)
            assert f"no Dask worker is connected to {address} yet" in log.read_text()
            assert not status_has(tmp_path / "o", "000", "done")
        finally:
            kill_group(proc)


@dataclass(frozen=True)
class Cluster:
    address: str
    workers: list[int]
    file: Path
    ref: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> object:
    tmp = tmp_path_factory.mktemp("cluster")
    path = sweep_file(tmp, epochs=20)
    with dask_cluster(tmp, workers=2) as (address, procs):
        out = tmp / "ref"
        proc = launch(*sweep_cmd(str(path), "--scheduler", address, "--out", str(out), "--quiet"))
        try:
            code, _, err = finish(proc)
        finally:
            kill_group(proc)
        assert code == 0, err
        yield Cluster(address, [p.pid for p in procs[1:]], path, out)


def test_a_sweep_runs_on_a_real_dask_scheduler_with_two_workers(cluster: Cluster) -> None:
    rows = read_csv(cluster.ref / "sweep.csv")
    assert len(rows) == 4 and all(r["status"] == "complete" for r in rows)
    ran_on = {c["result"]["pid"] for c in status(cluster.ref).values()}
    worker_procs = set().union(*(children(pid) | {pid} for pid in cluster.workers))
    assert ran_on <= worker_procs  # on the `dask worker` processes, not in the sweep command
    assert {c["result"]["omp_num_threads"] for c in status(cluster.ref).values()} == {"1"}


def test_a_worker_killed_mid_cell_loses_and_duplicates_no_cell(
    tmp_path: Path, cluster: Cluster
) -> None:
    out = tmp_path / "out"
    proc = launch(
        *sweep_cmd(str(cluster.file), "--scheduler", cluster.address, "--out", str(out), "--quiet")
    )
    killed: tuple[str, int] | None = None
    try:
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            for lock in sorted((out / "locks").glob("*.lock")) if (out / "locks").exists() else []:
                pid = lock.read_text().strip()
                ckpts = list((out / "cells" / lock.stem / "checkpoints").glob("ckpt-*.npz"))
                if pid and any(not c.name.endswith("0000000000.npz") for c in ckpts):
                    worker = parent_of(int(pid))
                    # the cell runs in a child of the worker (itself a child of `dask worker`)
                    assert worker in set().union(*(children(n) for n in cluster.workers))
                    os.kill(worker, signal.SIGKILL)  # the worker process running the cell
                    killed = (lock.stem, int(pid))
                    break
            time.sleep(0.02)
        assert killed is not None, "no cell was caught running"
        # the cell's own process dies with its worker: no orphan goes on writing the cell
        deadline = time.monotonic() + 10
        while alive(killed[1]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(killed[1]), "the cell's process outlived its worker"
        code, _, err = finish(proc)
    finally:
        kill_group(proc)
    assert code == 0, err
    rows = read_csv(out / "sweep.csv")
    assert [r["cell"] for r in rows] == ["000", "001", "002", "003"]  # each cell once
    cell, pid = killed
    result = status(out)[cell]["result"]
    assert result["how"] == "resumed" and result["pid"] != pid  # continued elsewhere
    assert_same_sweep(out, cluster.ref)
    events = sqlite3.connect(out / "cells" / cell / "journal.sqlite")
    try:
        replays = events.execute("SELECT SUM(replays) FROM plans").fetchone()[0]
    finally:
        events.close()
    assert replays is not None  # the resumed cell replayed from its checkpoint


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for its parent's reaper counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_resume_refuses_a_different_sweep_file(tmp_path: Path, embedded: Reference) -> None:
    other = sweep_file(tmp_path, epochs=5)
    done = cli("sweep", str(other), "--out", str(embedded.out), "--resume", "--quiet")
    assert done.returncode == 2 and "cells differ" in done.stderr
    again = cli("sweep", str(embedded.file), "--out", str(embedded.out), "--quiet")
    assert again.returncode == 2 and "already holds a sweep" in again.stderr
    assert json.loads((embedded.out / "sweep.json").read_text())["cells"][0]["name"] == "000"
