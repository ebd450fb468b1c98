"""Small, fast in-situ run configurations shared by the in-situ tests (real files, real runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Four 5 x 5 glyphs: N = 25 units, a 25 x 50 array of 1250 devices.
PATTERNS = """\
[T]
#####
..#..
..#..
..#..
..#..

[L]
#....
#....
#....
#....
#####

[X]
#...#
.#.#.
..#..
.#.#.
#...#

[O]
.###.
#...#
#...#
#...#
.###.
"""


def small_config(tmp: Path, **over: Any) -> Path:
    """A run config for a quick but realistic run (noisy preset, checkpoints, evaluation)."""
    patterns = tmp / "glyphs.txt"
    patterns.write_text(PATTERNS)
    data: dict[str, Any] = {
        "seed": 3,
        "training": {"patterns": str(patterns), "epochs": 6, "mode": "denoising"},
        "backend": {"preset": "epiram"},
        # EpiRAM's +5 V / -3 V pulses (and ISPP to 1.5x) on any backend: the simulator's own
        # limits for the preset, stated so that an instrument run (whose base is the built-in
        # 3 V) gets the same envelope, raised on purpose.
        "limits": {
            "max_set_v": 7.5,
            "max_reset_v": 4.5,
            "allow_raise": ["max_set_v", "max_reset_v"],
        },
        "programming": {"max_iterations": 6},
        "evaluation": {"samples": 20, "curve_samples": 4, "every_epochs": 2},
        "run": {"checkpoint_every": 5, "figures": False},  # figures: see test_insitu
    }
    for key, value in over.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    path = tmp / "run.json"
    path.write_text(json.dumps(data))
    return path


def cli(*args: str, timeout: float = 120.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    """`mrnn-hil ARGS` in a fresh interpreter, as a user runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


def final_arrays(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "final.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
