"""Bus cost of one training presentation on the serial pulse board (N = 100: 100 x 200 array).

A presentation asks for dW = eta * t_w * y v^T (paper values eta = 0.01, t_w = 3, v = +-1
saturated, y ~ N(0, 0.1), symmetrised), turned into proportional SET counts on the
differential pair (G+ for dW > 0, G- for dW < 0; 1000-state ideal device, |W| <= 0.5,
at most 16 pulses a device), then the array is read back, as the training loop does.

Measured in the same run, through pyserial on a pseudo-terminal against the board emulator
with 1 ms latency on every reply:
- batched: the driver (one ROW frame per non-empty row and group, one EXEC, one RARR?);
- baseline: one command per pulse (one PULSE frame of one pulse each, in waves so that every
  device receives its count; BEGIN/SHAPE/EXEC per wave), then the same array read.

Usage: python bench/bus.py [--latency 0.001] [--n 100] [--seed 0]
Last line: one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import time

import numpy as np

from drivers import board as B
from drivers import open_backend
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_serial import SerialEmulator
from drivers.faults import FaultConfig
from drivers.transport import SerialTransport
from protocols.limits import SafetyLimits
from protocols.plan import PulseGroup, PulsePlan
from sim_backend import get_preset


def presentation(n: int, seed: int) -> PulsePlan:
    """The pulse plan of one presentation on an n x 2n differential-pair array."""
    rng = np.random.default_rng(seed)
    v = np.sign(rng.standard_normal(n))
    y = 0.1 * rng.standard_normal(n)
    dw = 0.01 * 3.0 * np.outer(y, v)
    dw = 0.5 * (dw + dw.T)
    step = 0.5 / 1000  # |W| range over the device's 1000 states
    counts = np.minimum(np.rint(np.abs(dw) / step), 16).astype(np.int64)
    plus = np.where(dw > 0, counts, 0)
    minus = np.where(dw < 0, counts, 0)
    set_pulse = get_preset("ideal").set_pulse
    return PulsePlan.from_groups((n, 2 * n), [PulseGroup(set_pulse, np.hstack([plus, minus]))])


def batched(path: str, plan: PulsePlan) -> dict[str, float]:
    rows, cols = plan.shape
    with open_backend("serial", path, rows, cols, limits=SafetyLimits(), timeout_s=5.0) as be:
        t0, rt0 = time.perf_counter(), be.transport.round_trips
        be.apply(plan)
        t1, rt1 = time.perf_counter(), be.transport.round_trips
        be.read()
        t2, rt2 = time.perf_counter(), be.transport.round_trips
    return {
        "round_trips": rt2 - rt0,
        "apply_round_trips": rt1 - rt0,
        "read_round_trips": rt2 - rt1,
        "wall_s": t2 - t0,
        "apply_wall_s": t1 - t0,
    }


class _Naive:
    """A host that sends one command per pulse and waits for each acknowledgement."""

    def __init__(self, path: str) -> None:
        self.port = SerialTransport(path)
        self.tag = 0

    def call(self, body: str, nlines: int = 1) -> list[str]:
        self.tag += 1
        tag = B.tag_of(self.tag)
        self.port.write_line(B.encode(tag, body))
        self.port.round_trips += 1
        out = []
        while len(out) < nlines:
            rtag, rbody = B.decode(self.port.read_line(30.0))
            if B.parse_error(rbody):
                raise RuntimeError(rbody)
            if rtag == tag:
                out.append(rbody)
        return out


def per_pulse(path: str, plan: PulsePlan, first_batch: int) -> dict[str, float]:
    rows = plan.rows
    group = plan.groups[0]
    host = _Naive(path)
    t0 = time.perf_counter()
    batch = first_batch
    for wave in range(int(group.counts.max())):
        rr, cc = np.nonzero(group.counts > wave)
        host.call(B.begin(batch, 1, "none"))
        host.call(B.shape(batch, 0, group.shape.amplitude_v, group.shape.width_s, False))
        for r, c in zip(rr.tolist(), cc.tolist(), strict=True):
            host.call(B.pulse(batch, 0, r, c, 1))
        host.call(B.execute(batch))
        batch += 1
    t1, rt1 = time.perf_counter(), host.port.round_trips
    host.call(B.READ_ARRAY, rows + 1)
    t2 = time.perf_counter()
    host.port.close()
    return {
        "round_trips": host.port.round_trips,
        "apply_round_trips": rt1,
        "read_round_trips": host.port.round_trips - rt1,
        "wall_s": t2 - t0,
        "apply_wall_s": t1 - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="units (array n x 2n)")
    ap.add_argument("--latency", type=float, default=0.001, help="emulated reply latency, s")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    plan = presentation(args.n, args.seed)
    rows, cols = plan.shape
    core = BoardCore(make_array(rows, cols, preset="ideal", seed=args.seed))
    with SerialEmulator(core, FaultConfig(latency_s=args.latency)) as emu:
        fast = batched(emu.path, plan)
        slow = per_pulse(emu.path, plan, first_batch=core.last_batch + 1)
    applied = [b.pulses for b in core.log.entries]
    assert applied[0] == plan.total_pulses == sum(applied[1:]), "pulses lost or duplicated"
    result = {
        "bench": "bus",
        "n": args.n,
        "rows": rows,
        "cols": cols,
        "latency_s": args.latency,
        "pulses": plan.total_pulses,
        "devices_pulsed": int(np.count_nonzero(plan.counts_per_device())),
        "batched": fast,
        "per_pulse_baseline": slow,
        "round_trip_ratio": slow["round_trips"] / fast["round_trips"],
        "wall_speedup": slow["wall_s"] / fast["wall_s"],
    }
    print(
        f"N={args.n} ({rows}x{cols}), {plan.total_pulses} pulses, {args.latency * 1e3:g} ms "
        f"latency\n  batched:   {fast['round_trips']:>7} round trips  {fast['wall_s']:8.3f} s\n"
        f"  per pulse: {slow['round_trips']:>7} round trips  {slow['wall_s']:8.3f} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
