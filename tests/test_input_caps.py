"""Inputs that could hang the program or exhaust memory are refused in one line, before any
work starts: YAML alias bombs, deep nesting, FIFOs and devices, oversized files, pattern
sets and evaluations too large to hold.

Every case runs `mrnn-hil` as a user does, in a fresh process with a bounded address space
and a timeout, so a regression shows as a failed test, never as a hung or swapping machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from insitu_support import small_config

from hil.insitu.rundir import RunDir
from protocols.errors import InputError
from protocols.loading import MAX_DEPTH, MAX_YAML_NODES, parse_document
from protocols.protocol_file import library_dir

MEMORY_CAP = 3 << 30  # a regression dies of MemoryError here instead of swapping


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def mrnn(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=_cap_memory,
    )


def refused(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one-line error of a refused command (exit code 2), checked for `fragments`."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert len(lines[0]) < 400, lines[0]
    return lines[0]


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, levels):
        refs = ", ".join([f"*a{k - 1}"] * 9)
        lines.append(f"a{k}: &a{k} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_by_validate_and_train(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    refused(mrnn("validate", str(bomb)), str(bomb), "aliases expand")
    run = tmp_path / "run"
    refused(mrnn("train", "--config", str(bomb), "--out", str(run)), "aliases expand")
    assert not run.exists()


def test_yaml_aliases_that_stay_small_are_still_read(tmp_path: Path) -> None:
    # Anchors are a normal YAML feature: a pulse shared by SET and RESET passes the cap.
    data = yaml.safe_load((library_dir() / "epiram.yaml").read_text())
    text = yaml.safe_dump(data).replace("width_s: 1.0e-07", "width_s: &w 1.0e-07", 1)
    text = text.replace("width_s: 1.0e-07", "width_s: *w")
    assert "*w" in text
    proto = tmp_path / "anchored.yaml"
    proto.write_text(text)
    done = mrnn("validate", str(proto))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.yaml", "a: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        ("deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        ("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ],
)
def test_deep_nesting_is_one_line_not_a_recursion_error(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    refused(mrnn("train", "--config", str(path), "--out", str(tmp_path / "run")), "nested deeper")
    if not name.endswith(".toml"):
        refused(mrnn("validate", str(path)), "nested deeper")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "protocol.yaml"
    os.mkfifo(fifo)  # nobody ever writes: opening it for reading would block forever
    refused(mrnn("validate", str(fifo), timeout=30), "not a regular file")
    refused(mrnn("train", "--config", str(fifo), timeout=30), "not a regular file")
    patterns = tmp_path / "patterns.txt"
    os.mkfifo(patterns)
    refused(mrnn("train", "--patterns", str(patterns), timeout=30), "not a regular file")


def test_a_device_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    refused(mrnn("validate", "/dev/zero", timeout=30), "not a regular file")
    refused(mrnn("train", "--config", "/dev/zero", timeout=30), "not a regular file")
    refused(mrnn("train", "--patterns", "/dev/zero", timeout=30), "not a regular file")


def test_an_oversized_document_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(("# padding\n" * 120_000) + "name: x\n")  # 1.2 MB of comments
    refused(mrnn("validate", str(big)), "larger than the 1 MiB")


def test_caps_in_process() -> None:
    # The same caps as plain functions, for every format.
    with pytest.raises(InputError, match="nested deeper"):
        parse_document("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), "x.json", ".json")
    with pytest.raises(InputError, match="aliases expand"):
        parse_document(billion_laughs(7), "x.yaml", ".yaml")
    assert MAX_YAML_NODES < 9**7
    fine = parse_document("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1), "x.json", ".json")
    assert isinstance(fine, list)


def test_a_huge_pattern_grid_is_refused_before_the_run_directory(tmp_path: Path) -> None:
    grid = tmp_path / "huge.txt"
    row = "#" * 1000 + "\n"
    grid.write_text(row * 1000)  # one 1000 x 1000 pattern: W would be 10^6 x 10^6
    run = tmp_path / "run"
    refused(mrnn("train", "--patterns", str(grid), "--out", str(run)), "at most 1024")
    assert not run.exists()


def test_ten_thousand_patterns_are_refused_before_the_run_directory(tmp_path: Path) -> None:
    many = tmp_path / "many.txt"
    many.write_text("\n".join(["#.\n.#\n"] * 10_000))
    run = tmp_path / "run"
    refused(mrnn("train", "--patterns", str(many), "--out", str(run)), "more than 1024 patterns")
    assert not run.exists()
    arr = tmp_path / "many.npy"
    np.save(arr, np.ones((10_000, 4)))
    refused(mrnn("train", "--patterns", str(arr), "--out", str(run)), "more than 1024 patterns")
    assert not run.exists()


def test_an_npy_header_claiming_a_huge_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.npy"
    np.save(path, np.ones((2, 4)))
    raw = path.read_bytes().replace(b"(2, 4)", b"(2, 9999999)")
    path.write_bytes(raw)
    refused(mrnn("train", "--patterns", str(path), "--out", str(tmp_path / "run")), "pixels")


def test_an_evaluation_too_large_is_refused_before_any_training(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, evaluation={"samples": 100_000_000})
    run = tmp_path / "run"
    refused(mrnn("train", "--config", str(cfg), "--out", str(run)), "evaluation.samples")
    assert not run.exists()  # never a run left "running" after an epoch of training
    cfg = small_config(tmp_path, evaluation={"curve_samples": 100_000_000})
    refused(mrnn("train", "--config", str(cfg), "--out", str(run)), "evaluation.curve_samples")
    assert not run.exists()


def test_evaluate_refuses_a_huge_sample_count_before_reading_weights(tmp_path: Path) -> None:
    from hil.insitu.run_config import load_config
    from hil.insitu.training_run import resolve

    cfg, _, _ = resolve(load_config(small_config(tmp_path)))
    rundir = RunDir.create(tmp_path / "run")
    rundir.write_json("config.json", cfg.model_dump(mode="json"))
    rundir.save_npz(rundir.final_path, {"weights": np.zeros((25, 25))})
    rundir.release()
    line = refused(mrnn("evaluate", str(rundir.path), "--samples", "100000000"), "at most")
    assert "evaluation.samples" in line
    assert not (rundir.path / "evaluation.json").exists()
    # A sensible count still works (the cap is not in the way of normal use).
    done = mrnn("evaluate", str(rundir.path), "--samples", "5")
    assert done.returncode == 0, done.stderr
    assert json.loads((rundir.path / "evaluation.json").read_text())["samples"] == 5
