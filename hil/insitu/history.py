"""The conductance snapshots a run keeps over training (one per accuracy-curve epoch).

The trainer writes `checkpoints/conductance-<position>.npz` (the tracked conductances, float32,
with the position and the epochs completed) at the start and at every epoch of the accuracy
curve; unlike the checkpoints they are never pruned. The report draws them and the export
writes them out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hil.insitu.rundir import RunDir, RunDirError

_SNAPSHOT = re.compile(r"^conductance-(\d{10})\.npz$")


@dataclass(frozen=True)
class Snapshot:
    position: int
    epochs: int
    conductance_s: NDArray[np.float32]


def snapshots(rundir: RunDir) -> list[Snapshot]:
    """Every readable snapshot of the run, in training order."""
    if not rundir.checkpoint_dir.is_dir():
        return []
    found = sorted(
        (int(m.group(1)), p)
        for p in rundir.checkpoint_dir.iterdir()
        if (m := _SNAPSHOT.match(p.name))
    )
    out = []
    for _, path in found:
        try:
            a = rundir.load_npz(path, ("conductance_s", "position", "epochs"))
        except RunDirError:
            continue
        out.append(Snapshot(int(a["position"]), int(a["epochs"]), a["conductance_s"]))
    return out
