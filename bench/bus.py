"""Bus cost of one training presentation: serial pulse board (N = 100), ArC ONE and ArC TWO
(the 32-unit task).

Pulse board. A presentation asks for dW = eta * t_w * y v^T (paper values eta = 0.01,
t_w = 3, v = +-1 saturated, y ~ N(0, 0.1), symmetrised), turned into proportional SET counts
on the differential pair (G+ for dW > 0, G- for dW < 0; 1000-state ideal device, |W| <= 0.5,
at most 16 pulses a device), then the array is read back, as the training loop does.
Measured in the same run, through pyserial on a pseudo-terminal against the board emulator
with 1 ms latency on every reply:
- batched: the driver (one ROW frame per non-empty row and group, one EXEC, one RARR?);
- baseline: one command per pulse (one PULSE frame of one pulse each, in waves so that every
  device receives its count; BEGIN/SHAPE/EXEC per wave), then the same array read.

ArC ONE and ArC TWO. The 32-unit task (`--task glyphs32`: eight 4 x 8 digits, one pair per
unordered pair of units, 32 x 31 devices, `epiram` devices, w_max = 1): W after 5 epochs of
float training, one denoising presentation (p = 0.1), its dG planned by the scheme, then the
array read back.
- ArC ONE (emulator on a pty, every command takes 1 ms): the driver (per device one select,
  one pulse command per pulse, one closing read) against one pulse-and-read (job 3) per
  pulse, a round trip each, as the GUI's manual pulse does; both with the proportional
  scheme. A third row adds the driver's default 1 ms pacing between writes (libarc1's).
- ArC TWO (the pyarc2 double; every call that exchanges data with the board takes 1 ms, and
  the board spends 30 us per pulse operation besides the pulse, libarc2's settling delay):
  the outer-product scheme as row/column-parallel `pulse_slice_masked` against the
  proportional scheme as one `pulse_one` per pulse. pyarc2 queues pulse operations and sends
  them at `execute`, so the operations, not the calls, are what the board works through.

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


# -- ArC ONE and ArC TWO: the 32-unit task ------------------------------------------------------
ARC_SHAPE = (32, 31)


def arc_presentation(seed: int) -> dict[str, PulsePlan]:
    """One presentation of the 32-unit task, planned by the proportional and the outer-product
    schemes, and the conductances it starts from."""
    from hil.insitu.mapping import SymmetricMapping
    from hil.insitu.pulse_planner import UpdatePlanner
    from hil.network.float_training import TrainConfig, train
    from hil.network.learning import RuleConfig, presentation_update
    from hil.network.patterns import builtin_set, corrupt
    from protocols.spec import OuterProductScheme, ProportionalScheme, Pulse, PulsePair
    from sim_backend import mean_response

    P = builtin_set("glyphs32").patterns
    response = mean_response(get_preset("epiram"))
    mapping = SymmetricMapping.from_range(32, response.g_min_s, response.g_max_s, w_max=1.0)
    W = train(P, TrainConfig(epochs=5, mode="denoising", p_train=0.1, seed=seed)).W
    g = mapping.targets(np.clip(W, -1.0, 1.0))
    rng = np.random.default_rng(seed)
    k = int(rng.integers(P.shape[0]))
    update = presentation_update(W, corrupt(P[k][None], 0.1, rng), P[k][None], RuleConfig())
    dG = mapping.request(update.dW, g)
    pulses = PulsePair(
        set=Pulse(amplitude_v=2.0, width_s=100e-9), reset=Pulse(amplitude_v=-2.0, width_s=100e-9)
    )
    plans = {}
    for scheme in (
        ProportionalScheme(kind="proportional"),
        OuterProductScheme(kind="outer_product", bias="v2", rank=2),
    ):
        planner = UpdatePlanner(scheme, response, pulses, SafetyLimits())
        plans[scheme.kind], _ = planner.plan_open_loop(scheme, dG, g, np.random.default_rng(seed))
    return plans


def arc1_rows(plan: PulsePlan, latency_s: float, seed: int) -> dict[str, dict[str, float]]:
    from drivers.emu_arc1 import Arc1Core, Arc1Emulator

    out: dict[str, dict[str, float]] = {}
    for name, pacing in (("driver", 0.0), ("driver_1ms_pacing", 1e-3)):
        core = Arc1Core(make_array(*ARC_SHAPE, preset="epiram", seed=seed))
        with (
            Arc1Emulator(core, FaultConfig(latency_s=latency_s)) as emu,
            open_backend(
                "arc1", emu.url, *ARC_SHAPE, limits=SafetyLimits(), preset="epiram",
                reset_wait_s=0.0, write_delay_s=pacing, timeout_s=30.0,
            ) as be,
        ):  # fmt: skip
            c0, t0 = be.link.commands, time.perf_counter()
            be.apply(plan)
            be.read()
            out[name] = {
                "commands": be.link.commands - c0,
                "wall_s": time.perf_counter() - t0,
            }
        assert len(core.log.entries) == plan.total_pulses, "pulses lost or duplicated"
    # baseline: one pulse-and-read (job 3) per pulse, a round trip each, then the same read
    core = Arc1Core(make_array(*ARC_SHAPE, preset="epiram", seed=seed))
    with (
        Arc1Emulator(core, FaultConfig(latency_s=latency_s)) as emu,
        open_backend(
            "arc1", emu.url, *ARC_SHAPE, limits=SafetyLimits(), preset="epiram",
            reset_wait_s=0.0, write_delay_s=0.0, timeout_s=30.0,
        ) as be,
    ):  # fmt: skip
        c0, t0 = be.link.commands, time.perf_counter()
        for group in plan.groups:
            for r, c in zip(*np.nonzero(group.counts), strict=True):
                for _ in range(int(group.counts[r, c])):
                    be.pulse_and_read(int(r), int(c), group.shape)
        be.read()
        out["pulse_and_read_per_pulse"] = {
            "commands": be.link.commands - c0,
            "wall_s": time.perf_counter() - t0,
        }
    assert len(core.log.entries) == plan.total_pulses
    return out


def arc2_rows(plans: dict[str, PulsePlan], latency_s: float, seed: int) -> dict[str, dict]:
    from drivers.arc2_backend import Arc2Backend
    from drivers.emu_arc2 import Arc2Board, Pyarc2Double

    out: dict[str, dict] = {}
    for name, plan in (
        ("outer_product_slices", plans["outer_product"]),
        ("proportional_pulse_one", plans["proportional"]),
    ):
        board = Arc2Board(
            make_array(*ARC_SHAPE, preset="epiram", seed=seed),
            latency_s=latency_s,
            op_setup_s=30e-6,
        )
        api = Pyarc2Double(board)
        be = Arc2Backend(
            api.Instrument(0, "fw.bin"), api, *ARC_SHAPE, limits=SafetyLimits(),
            g_range_s=(2.46e-7, 1.23e-5),
        )  # fmt: skip
        n0, t0 = len(board.calls), time.perf_counter()
        be.apply(plan)
        be.read()
        calls = board.calls[n0:]
        out[name] = {
            "pulses": plan.total_pulses,
            "pyarc2_calls": len(calls),
            "pulse_operations": sum(n in ("pulse_one", "pulse_slice_masked") for n, _ in calls),
            "wall_s": time.perf_counter() - t0,
        }
        be.close()
        assert len(board.pulses) == plan.total_pulses, "pulses lost or duplicated"
    return out


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
    arc_plans = arc_presentation(args.seed)
    arc1 = arc1_rows(arc_plans["proportional"], args.latency, args.seed)
    arc2 = arc2_rows(arc_plans, args.latency, args.seed)
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
        "arc1": {
            "task": "glyphs32 (32 x 31 devices), proportional scheme",
            "pulses": arc_plans["proportional"].total_pulses,
            "devices_pulsed": int(np.count_nonzero(arc_plans["proportional"].counts_per_device())),
            **arc1,
        },
        "arc2": {"task": "glyphs32 (32 x 31 devices)", **arc2},
    }
    print(
        f"N={args.n} ({rows}x{cols}), {plan.total_pulses} pulses, {args.latency * 1e3:g} ms "
        f"latency\n  batched:   {fast['round_trips']:>7} round trips  {fast['wall_s']:8.3f} s\n"
        f"  per pulse: {slow['round_trips']:>7} round trips  {slow['wall_s']:8.3f} s"
    )
    p1 = arc_plans["proportional"].total_pulses
    print(f"ArC ONE, 32-unit task, {p1} pulses, {args.latency * 1e3:g} ms per command")
    for name, row in arc1.items():
        print(f"  {name:<26} {row['commands']:>6} commands  {row['wall_s']:8.3f} s")
    print(f"ArC TWO, 32-unit task, {args.latency * 1e3:g} ms per call to the board")
    for name, row in arc2.items():
        print(
            f"  {name:<26} {row['pulses']:>5} pulses  {row['pulse_operations']:>5} pulse ops  "
            f"{row['pyarc2_calls']:>5} calls  {row['wall_s']:8.3f} s"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
