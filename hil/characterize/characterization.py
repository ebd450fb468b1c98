"""Characterise devices with pulse trains and fit the mean response a planner needs.

Experiment (on any `CrossbarBackend`): K devices are RESET to the floor, then C cycles of
n SET pulses and n RESET pulses, each pulse followed by a read, and a few repeated reads at
the end of each phase (read noise). Extraction, per device and direction:

* G_min, G_max: the floor and ceiling the device clips at (the atom of readings at the
  extreme, robust to read noise); on/off = G_max / G_min.
* The mean one-pulse step as a function of the state, fitted as the conditional mean
  E[z' - z | z] (a quadratic in the normalised rising state z) over transitions that cannot
  have been clipped. Conditioning on the read state makes the fit unbiased under
  cycle-to-cycle noise, which makes the plain average trace of a noisy device drift away
  from its noiseless curve.
* The noiseless trace is rebuilt from that step, the state count is where it reaches the
  bound (99 % when it only approaches it), and the NeuroSim NL label is the least-squares fit
  of the normalised trace, as NeuroSim defines it.
* C2C sigma: the residual spread of the step fit (read noise removed), in fractions of the
  range per pulse. D2D sigma: the spread of the per-device values.

The fitted mean device is a `NeuroSimResponse` stored in characterization.json; the planner
loads it with `protocols.fitted_response.load_fitted_response`, so a measured device, not a
preset, sets pulse counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

from protocols.backend import CrossbarBackend
from protocols.errors import InputError
from protocols.fitted_response import CHARACTERIZATION_FORMAT
from protocols.limits import LimitViolation, check_plan
from protocols.plan import PulseGroup, PulsePlan
from protocols.response import _NL_MAX, NeuroSimResponse, curve, nl_to_a
from protocols.spec import AcceptanceSpec, ProtocolFile, StateKind

F64 = NDArray[np.float64]

#: Fraction of the window a trace must cover to count as having reached the bound.
COVER = 0.99
#: Transitions whose predicted next state lies within this many sigma of a bound are dropped.
CLIP_MARGIN_SIGMA = 2.5
#: A device whose readings span less than this fraction of their maximum is stuck.
STUCK_SPAN = 0.05
#: NL labels are fitted inside this bound (the NeuroSim table ends at about 9.7).
NL_BOUND = 9.0
#: Longest rebuilt trace, in pulses (a device that never saturates is cut here).
MAX_TRACE = 100_000
#: A reading below this fraction of the backend's nominal G_min is an open circuit.
OPEN_CIRCUIT_FRACTION = 0.01

METRIC_UNITS: dict[str, str] = {
    "g_min_s": "S",
    "g_max_s": "S",
    "on_off": "",
    "states_ltp": "pulses",
    "states_ltd": "pulses",
    "distinguishable_states": "",
    "nl_ltp": "",
    "nl_ltd": "",
    "asymmetry": "",
    "c2c_sigma": "of range/pulse",
    "read_noise": "of G",
    "d2d_sigma_g_min": "rel.",
    "d2d_sigma_g_max": "rel.",
    "d2d_sigma_nl_ltp": "",
    "d2d_sigma_nl_ltd": "",
    "stuck_fraction": "",
}


# --- the experiment --------------------------------------------------------------------------


@dataclass
class Traces:
    """Raw readings of a characterisation run (S).

    ltp, ltd: (cycles, n + 1, K), index 0 the read before the first pulse of the phase;
    repeats: (cycles, 2, repeat_reads, K), repeated reads after the SET and RESET phases.
    """

    ltp: F64
    ltd: F64
    repeats: F64
    rows: NDArray[np.int64]
    cols: NDArray[np.int64]


def device_grid(k: int) -> tuple[int, int]:
    """A near-square (rows, cols) array holding at least k devices."""
    rows = max(1, math.isqrt(k))
    return rows, -(-k // rows)


def read_devices(
    backend: CrossbarBackend, rows: NDArray[np.int64], cols: NDArray[np.int64], averages: int
) -> F64:
    """Mean of `averages` reads of the selected devices (flat, in selection order)."""
    total = np.zeros(rows.size)
    for _ in range(averages):
        total += backend.read()[rows, cols]
    return total / averages


def _one_pulse_plan(
    shape: tuple[int, int], rows: NDArray[np.int64], cols: NDArray[np.int64], group_shape: Any
) -> PulsePlan:
    counts = np.zeros(shape, dtype=np.int64)
    counts[rows, cols] = 1
    return PulsePlan(rows=shape[0], cols=shape[1], groups=(PulseGroup(group_shape, counts),))


def check_experiment(
    backend: CrossbarBackend,
    protocol: ProtocolFile,
    plans: tuple[PulsePlan, PulsePlan],
    *,
    cycles: int,
) -> None:
    """Refuse the whole experiment before its first pulse if it cannot stay inside the limits.

    Each device gets n RESET pulses, then `cycles` x (n SET + n RESET): that total must fit the
    run budget, or the experiment would stop half-way with the devices in an unknown state.
    The nominal pulses are checked (compliance, energy) at the highest conductance the
    devices are expected to reach: the backend's nominal G_max, or the upper end of the
    protocol's accepted G_max range if that is higher.
    """
    limits = backend.limits
    n = protocol.characterize.pulses_per_phase
    total = n * (2 * cycles + 1)
    selected = plans[0].counts_per_device() > 0
    after = np.where(selected, backend.pulse_counts + total, 0)
    over = after > limits.max_pulses_per_device_per_run
    if over.any():
        r, c = divmod(int(np.argmax(over)), backend.shape[1])
        raise LimitViolation(
            f"characterization: {cycles} cycle(s) of {n} SET + {n} RESET pulses (plus {n} "
            f"RESET first) would bring device (row={r}, col={c}) to {after[r, c]} pulses in "
            f"this run, over max_pulses_per_device_per_run={limits.max_pulses_per_device_per_run}"
            "; lower cycles or pulses_per_phase"
        )
    g_hi = backend.info().g_max_s
    accepted = protocol.acceptance.g_max_s
    if accepted is not None and accepted.max is not None:
        g_hi = max(g_hi, accepted.max)
    try:
        for plan in plans:
            check_plan(plan, limits, conductance_s=np.where(selected, g_hi, 0.0))
    except LimitViolation as exc:
        raise LimitViolation(
            f"characterization at the highest expected conductance {g_hi:.3g} S: {exc}"
        ) from None


def acquire(
    backend: CrossbarBackend,
    protocol: ProtocolFile,
    *,
    devices: int,
    cycles: int,
    progress: Callable[[int, int], None] | None = None,
) -> Traces:
    """Run the pulse-train experiment on the first `devices` devices of `backend`."""
    n = protocol.characterize.pulses_per_phase
    repeat = protocol.characterize.repeat_reads
    averages = protocol.read.averages
    b_rows, b_cols = backend.shape
    if devices > b_rows * b_cols:
        raise InputError(f"devices = {devices} but the backend has only {b_rows * b_cols} devices")
    flat = np.arange(devices)
    rows, cols = (flat // b_cols).astype(np.int64), (flat % b_cols).astype(np.int64)
    set_plan = _one_pulse_plan(backend.shape, rows, cols, protocol.pulses.set.shape())
    reset_plan = _one_pulse_plan(backend.shape, rows, cols, protocol.pulses.reset.shape())
    check_experiment(backend, protocol, (set_plan, reset_plan), cycles=cycles)
    # Before the first pulse: every selected device must be there (a line pair that holds
    # no device, or a wrong --array/--block, reads as an open circuit).
    check_connected(backend, rows, cols, read_devices(backend, rows, cols, averages)[None, :])
    g_now = np.zeros(backend.shape)  # latest read of the selected devices, for each check
    for _ in range(n):  # bring every device to its floor first
        backend.apply(reset_plan)
    ltp = np.empty((cycles, n + 1, devices))
    ltd = np.empty((cycles, n + 1, devices))
    reps = np.empty((cycles, 2, repeat, devices))
    total = cycles * 2 * n
    done = 0
    for c in range(cycles):
        for phase, (plan, out) in enumerate(((set_plan, ltp), (reset_plan, ltd))):
            out[c, 0] = read_devices(backend, rows, cols, averages)
            for k in range(1, n + 1):
                g_now[rows, cols] = out[c, k - 1]
                check_plan(plan, backend.limits, conductance_s=g_now)
                backend.apply(plan)
                out[c, k] = read_devices(backend, rows, cols, averages)
            done += n
            if progress is not None:
                progress(done, total)
            for r in range(repeat):
                reps[c, phase, r] = read_devices(backend, rows, cols, averages)
    # A device that read as an open circuit all along gives no verdict either.
    readings = np.concatenate([ltp.reshape(-1, devices), ltd.reshape(-1, devices)])
    check_connected(backend, rows, cols, readings, during=True)
    return Traces(ltp=ltp, ltd=ltd, repeats=reps, rows=rows, cols=cols)


def check_connected(
    backend: CrossbarBackend,
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    readings: F64,
    *,
    during: bool = False,
) -> None:
    """InputError naming the first device whose readings (n, K) all look like an open
    circuit (below OPEN_CIRCUIT_FRACTION of the nominal G_min): a characterisation of
    missing devices must stop with that, not with a verdict."""
    info = backend.info()
    threshold = OPEN_CIRCUIT_FRACTION * info.g_min_s
    open_ = np.all(readings <= threshold, axis=0)
    if not open_.any():
        return
    k = int(np.flatnonzero(open_)[0])
    r, c = int(rows[k]), int(cols[k])
    where = f"device (row={r}, col={c})"
    block = info.details.get("block")
    if block:
        r0, c0 = (int(part.split(":")[0]) for part in str(block).split(","))
        where = f"device (row={r0 + r}, col={c0 + c}) of the array"
    g = float(np.max(readings[:, k]))
    when = "throughout the experiment" if during else "before any pulse"
    raise InputError(
        f"{where} reads {g:.3g} S {when}, below {threshold:.3g} S: an open circuit "
        f"({int(open_.sum())} of {open_.size} devices); check the wiring and --array/--block. "
        "No verdict."
    )


# --- extraction ------------------------------------------------------------------------------


@dataclass
class DirectionFit:
    """Fit of one direction, per device or pooled (arrays of length K; NaN where it failed)."""

    coef: F64  # (K, 2): E[z' - z | z] = c0 + c1 z, z the rising normalised state
    sigma: F64  # C2C: residual std of z' - z with read noise removed, fraction of range
    states: F64
    nl: F64  # NeuroSim label (LTD labels negative for the usual saturating curve)
    used: NDArray[np.int64]


def to_state(g: F64, lo: F64 | float, hi: F64 | float, kind: StateKind) -> F64:
    """Normalised state in [0, 1] of a conductance, in the protocol's state coordinate."""
    if kind == "resistance":
        return (1.0 / lo - 1.0 / g) / (1.0 / lo - 1.0 / hi)
    return (g - lo) / (hi - lo)


def from_state(x: F64, lo: F64 | float, hi: F64 | float, kind: StateKind) -> F64:
    if kind == "resistance":
        return 1.0 / (1.0 / lo - x * (1.0 / lo - 1.0 / hi))
    return lo + x * (hi - lo)


def state_slope(g: F64, lo: F64 | float, hi: F64 | float, kind: StateKind) -> F64:
    """d(state)/dG, to turn read noise (S) into state units."""
    if kind == "resistance":
        return 1.0 / (g * g * (1.0 / lo - 1.0 / hi))
    return np.broadcast_to(1.0 / (hi - lo), np.shape(g))


def read_noise(traces: Traces) -> float:
    """Relative read noise from repeated reads of unchanged devices (pooled)."""
    reps = traces.repeats
    mean = reps.mean(axis=2, keepdims=True)
    rel = (reps - mean) / np.where(mean > 0, mean, np.nan)
    dof = reps.shape[2] - 1
    count = dof * int(np.isfinite(rel[:, :, 0, :]).sum())
    return float(math.sqrt(np.nansum(rel**2) / max(1, count)))


def device_bounds(traces: Traces, sigma_read: float) -> tuple[F64, F64]:
    """Floor and ceiling of each device: the median of the readings within read noise of the
    extreme reading (the atom where a device clips), so read noise does not inflate them."""
    k = traces.ltp.shape[-1]
    allr = np.concatenate(
        [traces.ltp.reshape(-1, k), traces.ltd.reshape(-1, k), traces.repeats.reshape(-1, k)]
    )
    band = 3.0 * sigma_read + 1e-12
    hi_ext = allr.max(axis=0)
    lo_ext = allr.min(axis=0)
    hi = np.nanmedian(np.where(allr >= hi_ext * (1.0 - band), allr, np.nan), axis=0)
    lo = np.nanmedian(np.where(allr <= lo_ext * (1.0 + band), allr, np.nan), axis=0)
    return lo, hi


def _linear_fit(z: F64, dz: F64, w: F64, mask: NDArray[np.bool_]) -> F64:
    """Instrumental-variable fit of dz = c0 + c1 z per column over `mask` (NaN if too few).

    The instrument w is the reading before z: its read noise is independent of the noise in
    z (which also enters dz with the opposite sign), so read noise cannot masquerade as a
    curvature of the device, as it would in a plain least-squares fit.
    """
    n = mask.sum(axis=0).astype(np.float64)
    zm = np.where(mask, z, 0.0)
    dm = np.where(mask, dz, 0.0)
    wm = np.where(mask, w, 0.0)
    sz, sd, sw = zm.sum(axis=0), dm.sum(axis=0), wm.sum(axis=0)
    swz, swd = (wm * zm).sum(axis=0), (wm * dm).sum(axis=0)
    det = n * swz - sw * sz
    scale = np.maximum(np.abs(n * (wm * wm).sum(axis=0)), 1e-300)
    ok = (n >= 4) & (np.abs(det) > 1e-9 * scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        c1 = np.where(ok, (n * swd - sw * sd) / det, np.nan)
        c0 = np.where(ok, (sd - c1 * sz) / n, np.nan)
    return np.stack([c0, c1], axis=-1)


def _masked_mean(a: F64, mask: NDArray[np.bool_]) -> F64:
    """Column means of `a` over `mask`; NaN for a column with nothing selected."""
    n = mask.sum(axis=0)
    total = np.where(mask, a, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def fit_steps(
    z_prev: F64, z0: F64, z1: F64, read0: F64, read1: F64
) -> tuple[F64, F64, NDArray[np.int64]]:
    """Fit E[z1 - z0 | z0] = c0 + c1 z0 per column on transitions that cannot have clipped.

    z_prev, z0, z1: (N, K) rising states one pulse before, at, and one pulse after each
    transition (z_prev is the instrument); read0, read1: read-noise standard deviations of
    z0 and z1 in state units. Returns (coef (K, 2), C2C sigma (K,), transitions used (K,)).
    """
    dz = z1 - z0
    valid = np.isfinite(z0) & np.isfinite(z1) & np.isfinite(z_prev)
    mask = valid.copy()
    k = z0.shape[1]
    coef = np.full((k, 2), np.nan)
    sigma = np.full(k, np.nan)
    for _ in range(4):  # refit after dropping transitions that may have hit a bound
        coef = _linear_fit(z0, dz, z_prev, mask)
        step = coef[:, 0] + coef[:, 1] * z0
        resid = np.where(mask, dz - step, np.nan)
        sigma = np.sqrt(_masked_mean(resid**2, mask))
        margin = CLIP_MARGIN_SIGMA * np.nan_to_num(sigma, nan=0.05) + 1e-9
        # Select on the instrument (two steps ahead of z_prev), not on z0: z0's read noise
        # also enters dz, so cutting on z0 would bias the steps near the cut.
        ahead = z_prev + 2.0 * (coef[:, 0] + coef[:, 1] * z_prev)
        mask = valid & (ahead - margin > 0.0) & (ahead + margin < 1.0)
    read_var = _masked_mean(read0**2 + read1**2, mask)
    c2c = np.sqrt(np.clip(sigma**2 - np.nan_to_num(read_var), 0.0, None))
    return coef, c2c, mask.sum(axis=0).astype(np.int64)


def rebuild_trace(coef: F64, lo: F64, hi: F64, kind: StateKind, rising_up: bool) -> tuple[F64, F64]:
    """Noiseless trace of one direction under the fitted step, as the rising normalised
    conductance u_k (K, L) from u = 0, and the state count (K,).

    The state count is where u reaches the bound (interpolated); a trace that only approaches
    it (no arrival within a few pulses after covering COVER of the window) counts the pulses
    to COVER instead, as the simulator's own fits do. NaN when the step stalls before COVER.
    """
    k = coef.shape[0]
    z = np.zeros(k)

    def u_of(zz: F64) -> F64:
        x = zz if rising_up else 1.0 - zz
        u = (from_state(x, lo, hi, kind) - lo) / (hi - lo)
        return u if rising_up else 1.0 - u

    u = u_of(z)
    out = [u]
    at_cover = np.full(k, np.nan)
    at_top = np.full(k, np.nan)
    alive = np.all(np.isfinite(coef), axis=1)
    count = 0
    while alive.any() and count < MAX_TRACE:  # model recursion, vectorised over devices
        step = coef[:, 0] + coef[:, 1] * z
        alive &= step > 1e-12
        z = np.where(alive, np.minimum(z + step, 1.0), z)
        u_new = u_of(z)
        count += 1
        for level, store in ((COVER, at_cover), (1.0 - 1e-9, at_top)):
            hit = alive & np.isnan(store) & (u_new >= level)
            frac = (min(level, 1.0) - u) / np.maximum(u_new - u, 1e-15)
            store[hit] = count - 1 + np.clip(frac[hit], 0.0, 1.0)
        grace = np.maximum(3.0, 0.1 * np.nan_to_num(at_cover, nan=np.inf))
        alive &= np.isnan(at_top) & ~(count > at_cover + grace)
        u = u_new
        out.append(u)
    states = np.where(np.isfinite(at_top), at_top, at_cover)
    return np.stack(out, axis=1), states


def _fit_label(trace: F64, states: float, sign: float) -> float:
    """NL label whose NeuroSim curve best matches the rebuilt trace (least squares)."""
    n = max(2, round(states))
    p = np.arange(n + 1) / n
    tgt = trace[: n + 1]
    tgt = np.concatenate([tgt, np.full(max(0, n + 1 - tgt.size), tgt[-1])])
    tgt = tgt / max(float(tgt[-1]), 1e-12)

    def loss(label: float) -> float:
        return float(np.sum((curve(p, nl_to_a(sign * label)) - tgt) ** 2))

    return float(minimize_scalar(loss, bounds=(-NL_BOUND, NL_BOUND), method="bounded").x)


def _direction(
    fit: tuple[F64, F64, NDArray[np.int64]],
    lo: F64,
    hi: F64,
    kind: StateKind,
    rising_up: bool,
) -> DirectionFit:
    coef, c2c, used = fit
    trace, states = rebuild_trace(coef, lo, hi, kind, rising_up)
    sign = 1.0 if rising_up else -1.0
    nl = np.full(coef.shape[0], np.nan)
    for d in np.flatnonzero(np.isfinite(states)):  # one scalar fit per fitted curve
        nl[d] = _fit_label(trace[d], float(states[d]), sign)
    return DirectionFit(coef=coef, sigma=c2c, states=states, nl=nl, used=used)


def fit_direction(
    traces: F64,
    lo: F64,
    hi: F64,
    sigma_read: float,
    *,
    kind: StateKind,
    rising_up: bool,
    good: NDArray[np.bool_],
) -> tuple[DirectionFit, DirectionFit]:
    """Fit one direction from (cycles, n + 1, K) readings of that phase.

    Returns (per-device fits, pooled fit of the working devices as one typical device). The
    pooled fit gives the metrics (far less noisy); the per-device fits give the D2D spread.
    """
    x = to_state(traces, lo, hi, kind)
    z = x if rising_up else 1.0 - x
    read = sigma_read * traces * state_slope(traces, lo, hi, kind)
    kdev = z.shape[-1]

    def flat(a: F64, lo_k: int, hi_k: int | None) -> F64:
        return a[:, lo_k:hi_k].reshape(-1, kdev)

    zp, z0, z1 = flat(z, 0, -2), flat(z, 1, -1), flat(z, 2, None)
    r0, r1 = flat(read, 1, -1), flat(read, 2, None)
    per = _direction(fit_steps(zp, z0, z1, r0, r1), lo, hi, kind, rising_up)
    pooled_fit = fit_steps(*(a[:, good].reshape(-1, 1) for a in (zp, z0, z1, r0, r1)))
    lo_t = np.array([np.median(lo[good])])
    hi_t = np.array([np.median(hi[good])])
    pooled = _direction(pooled_fit, lo_t, hi_t, kind, rising_up)
    return per, pooled


@dataclass
class Characterization:
    """Metrics (median over working devices), per-device values and the fitted model."""

    metrics: dict[str, float]
    per_device: dict[str, list[float]]
    response: NeuroSimResponse | None
    stuck: list[int]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


@dataclass(frozen=True)
class Verdict:
    metric: str
    value: float
    allowed: str
    passed: bool
    reason: str


def _asymmetry(resp: NeuroSimResponse) -> float:
    """Mean over the window of |step_SET - step_RESET| / (step_SET + step_RESET)."""
    g = resp.g_min_s + (resp.g_max_s - resp.g_min_s) * np.linspace(0.02, 0.98, 49)
    up, down = resp.step(g, +1), resp.step(g, -1)
    return float(np.mean(np.abs(up - down) / np.maximum(up + down, 1e-300)))


def _distinguishable(
    resp: NeuroSimResponse, c2c: float, sigma_read: float, kind: StateKind
) -> float:
    """Resolvable levels along the LTP curve: each pulse adds min(1, step / 2 sigma), sigma
    the read noise plus one pulse of C2C noise at that conductance (1 + states when noiseless).
    """
    p = np.arange(resp.states_ltp + 1, dtype=np.float64)
    g = resp.after_pulses(np.full(p.shape, resp.g_min_s), p)
    lo, hi = resp.g_min_s, resp.g_max_s
    c2c_g = c2c / state_slope(g, lo, hi, kind)
    sigma = np.sqrt((sigma_read * g) ** 2 + c2c_g**2)[1:]
    steps = np.diff(g)
    frac = np.where(sigma > 0, np.minimum(1.0, steps / np.maximum(2.0 * sigma, 1e-300)), 1.0)
    return float(1.0 + frac.sum())


def extract(traces: Traces, kind: StateKind = "conductance") -> Characterization:
    """All metrics and the fitted mean response from raw traces."""
    sigma_read = read_noise(traces)
    lo, hi = device_bounds(traces, sigma_read)
    stuck = (hi - lo) < STUCK_SPAN * hi
    good = ~stuck
    if not good.any():
        raise InputError("every characterised device is stuck: no conductance change measured")
    # Stuck devices get NaN bounds for the fits, so none of their transitions is used.
    lo_fit, hi_fit = np.where(good, lo, np.nan), np.where(good, hi, np.nan)
    ltp, ltp_all = fit_direction(
        traces.ltp, lo_fit, hi_fit, sigma_read, kind=kind, rising_up=True, good=good
    )
    ltd, ltd_all = fit_direction(
        traces.ltd, lo_fit, hi_fit, sigma_read, kind=kind, rising_up=False, good=good
    )

    def med(a: F64) -> float:
        vals = a[good & np.isfinite(a)]
        return float(np.median(vals)) if vals.size else float("nan")

    def rel_sd(a: F64) -> float:
        vals = a[good & np.isfinite(a)]
        return float(np.std(vals, ddof=1) / np.mean(vals)) if vals.size > 1 else float("nan")

    def sd(a: F64) -> float:
        vals = a[good & np.isfinite(a)]
        return float(np.std(vals, ddof=1)) if vals.size > 1 else float("nan")

    metrics: dict[str, float] = {
        "g_min_s": med(lo),
        "g_max_s": med(hi),
        "states_ltp": float(ltp_all.states[0]),
        "states_ltd": float(ltd_all.states[0]),
        "nl_ltp": float(ltp_all.nl[0]),
        "nl_ltd": float(ltd_all.nl[0]),
        "c2c_sigma": med(0.5 * (ltp.sigma + ltd.sigma)),
        "read_noise": sigma_read,
        "d2d_sigma_g_min": rel_sd(lo),
        "d2d_sigma_g_max": rel_sd(hi),
        "d2d_sigma_nl_ltp": sd(ltp.nl),
        "d2d_sigma_nl_ltd": sd(ltd.nl),
        "stuck_fraction": float(stuck.mean()),
    }
    g_lo = metrics["g_min_s"]
    metrics["on_off"] = metrics["g_max_s"] / g_lo if g_lo > 0 else float("nan")
    response: NeuroSimResponse | None = None
    fitted = [metrics[k] for k in ("states_ltp", "states_ltd", "nl_ltp", "nl_ltd")]
    if all(math.isfinite(v) for v in fitted) and metrics["g_max_s"] > metrics["g_min_s"]:
        response = NeuroSimResponse(
            g_min_s=metrics["g_min_s"],
            g_max_s=metrics["g_max_s"],
            states_ltp=max(2, round(metrics["states_ltp"])),
            states_ltd=max(2, round(metrics["states_ltd"])),
            nl_ltp=float(np.clip(metrics["nl_ltp"], -_NL_MAX, _NL_MAX)),
            nl_ltd=float(np.clip(metrics["nl_ltd"], -_NL_MAX, _NL_MAX)),
        )
        metrics["asymmetry"] = _asymmetry(response)
        metrics["distinguishable_states"] = _distinguishable(
            response, metrics["c2c_sigma"], sigma_read, kind
        )
    else:
        metrics["asymmetry"] = float("nan")
        metrics["distinguishable_states"] = float("nan")
    per_device = {
        "row": traces.rows.astype(float).tolist(),
        "col": traces.cols.astype(float).tolist(),
        "g_min_s": lo.tolist(),
        "g_max_s": hi.tolist(),
        "states_ltp": ltp.states.tolist(),
        "states_ltd": ltd.states.tolist(),
        "nl_ltp": ltp.nl.tolist(),
        "nl_ltd": ltd.nl.tolist(),
        "c2c_sigma_ltp": ltp.sigma.tolist(),
        "c2c_sigma_ltd": ltd.sigma.tolist(),
    }
    return Characterization(
        metrics=metrics,
        per_device=per_device,
        response=response,
        stuck=[int(i) for i in np.flatnonzero(stuck)],
    )


# --- judging, saving, loading ----------------------------------------------------------------


def judge(result: Characterization, acceptance: AcceptanceSpec) -> list[Verdict]:
    """Verdict per metric named in the acceptance spec."""
    verdicts: list[Verdict] = []
    for name, rng in acceptance.judged().items():
        value = result.metrics.get(name, float("nan"))
        ok = rng.contains(value)
        if ok:
            reason = "within range"
        elif not math.isfinite(value):
            reason = "could not be measured"
        elif rng.min is not None and value < rng.min:
            reason = f"below min {rng.min:.4g}"
        else:
            reason = f"above max {rng.max:.4g}"
        verdicts.append(Verdict(name, value, rng.describe(), ok, reason))
    result.verdicts = verdicts
    return verdicts


def _clean(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_json(result: Characterization, protocol: ProtocolFile, extra: dict[str, Any]) -> str:
    doc = {
        "format": CHARACTERIZATION_FORMAT,
        "version": 1,
        "protocol": protocol.name,
        "passed": result.passed,
        "metrics": {k: _clean(v) for k, v in sorted(result.metrics.items())},
        "verdicts": [
            {
                "metric": v.metric,
                "value": _clean(v.value),
                "allowed": v.allowed,
                "passed": v.passed,
                "reason": v.reason,
            }
            for v in result.verdicts
        ],
        "response": None if result.response is None else result.response.model_dump(),
        "stuck_devices": result.stuck,
        "per_device": {k: [_clean(x) for x in v] for k, v in result.per_device.items()},
        **extra,
    }
    return json.dumps(doc, indent=2)


def characterize(
    backend: CrossbarBackend,
    protocol: ProtocolFile,
    *,
    devices: int | None = None,
    cycles: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Traces, Characterization]:
    """Run the experiment, extract the metrics and judge them against the protocol's spec."""
    k = devices if devices is not None else protocol.characterize.devices
    c = cycles if cycles is not None else protocol.characterize.cycles
    traces = acquire(backend, protocol, devices=k, cycles=c, progress=progress)
    result = extract(traces, protocol.characterize.state)
    judge(result, protocol.acceptance)
    return traces, result
