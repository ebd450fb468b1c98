"""`SimulatedCrossbar`: the simulated memristor array behind the `CrossbarBackend` contract.

The state of each device is a normalised float32 x in [0, 1] (0 = G_min, 1 = G_max); the
device model maps it to a conductance. A pulse group moves every device at once with the exact
n-pulse rule of `sim_backend.devices`, so one plan costs a few passes over the array whatever
its pulse counts: groups that touch disjoint devices (the usual SET group plus RESET group)
share one pass. Devices start at `config.initial` (G_min by default).

Random streams are split from one seed (device draws, faults, drift exponents, dynamic noise,
cycle-to-cycle noise), so the same seed gives the same array and a snapshot resumes exactly.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import NDArray

from protocols.backend import BackendInfo, CrossbarBackend
from protocols.crashpoints import crash_point
from protocols.limits import SafetyLimits, cap_to_ceilings
from protocols.plan import PulsePlan, PulseShape
from sim_backend.aging import apply_drift, drift_exponents, endurance_factor
from sim_backend.config import DeviceConfig
from sim_backend.devices import DeviceArrays, ShapeTerms, build_devices, shape_terms
from sim_backend.disturb import half_selects
from sim_backend.faults import StuckDevices, draw_stuck
from sim_backend.noise import GaussianSource
from sim_backend.presets import get_preset
from sim_backend.readout import analog_product, noisy_conductance, reported

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

_CACHE_SHAPES = 32
_ENERGY_FLUSH = 256


def default_limits(cfg: DeviceConfig) -> SafetyLimits:
    """Conservative defaults, widened to let the device's own nominal pulses (and ISPP steps up
    to 1.5x their amplitude) through, never past the hard ceilings."""
    base = SafetyLimits()
    return cap_to_ceilings(
        SafetyLimits(
            max_set_v=max(base.max_set_v, 1.5 * cfg.set_pulse.amplitude_v),
            max_reset_v=max(base.max_reset_v, 1.5 * abs(cfg.reset_pulse.amplitude_v)),
            max_width_s=max(
                base.max_width_s, 10.0 * cfg.set_pulse.width_s, 10.0 * cfg.reset_pulse.width_s
            ),
        )
    )


def switching_threshold(cfg: DeviceConfig) -> float | None:
    """The smaller of the SET and RESET switching thresholds (V); None for a soft-threshold
    law (no voltage is entirely safe there; reads are bounded by the limits alone)."""
    smallest = min(float(cfg.threshold_set_v), float(cfg.threshold_reset_v))
    return smallest if smallest > 0.0 else None


def _initial_state(cfg: DeviceConfig) -> float:
    if cfg.initial == "min":
        return 0.0
    if cfg.initial == "max":
        return 1.0
    if cfg.initial == "mid":
        return 0.5
    return float(cfg.initial)


class SimulatedCrossbar(CrossbarBackend):
    """A simulated `rows x cols` memristor crossbar with device nonidealities.

    `preset` is a preset name (see `sim_backend.PRESETS`) or a `DeviceConfig`; keyword
    `overrides` replace fields of it (`c2c={"sigma": 0.01}` or `c2c__sigma=0.01`).
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        *,
        preset: str | DeviceConfig = "ideal",
        seed: int = 0,
        limits: SafetyLimits | None = None,
        read_v: float | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(preset, str):
            cfg = get_preset(preset)
        elif isinstance(preset, DeviceConfig):
            cfg = preset
        else:
            raise TypeError(f"preset must be a name or a DeviceConfig, got {type(preset).__name__}")
        cfg = cfg.with_overrides(**overrides)
        super().__init__(
            rows,
            cols,
            limits=limits if limits is not None else default_limits(cfg),
            read_v=read_v,
            switching_v=switching_threshold(cfg),
        )
        self.config: DeviceConfig = cfg
        self.seed = int(seed)
        n = self._rows * self._cols
        self._n = n
        seq = np.random.SeedSequence(self.seed)
        s_dev, s_fault, s_drift, s_dyn, s_noise = seq.spawn(5)
        self._dev: DeviceArrays = build_devices(cfg, n, np.random.Generator(np.random.PCG64(s_dev)))
        self._stuck: StuckDevices = draw_stuck(
            cfg.faults, n, np.random.Generator(np.random.PCG64(s_fault))
        )
        self._nu: F64 = (
            drift_exponents(cfg.drift, n, np.random.Generator(np.random.PCG64(s_drift)))
            if cfg.drift.enabled
            else np.zeros(0)
        )
        self._rng = np.random.Generator(np.random.PCG64(s_dyn))
        self._noise = GaussianSource(
            int(s_noise.generate_state(1)[0]),
            n,
            buffered=cfg.c2c.sampling == "buffered",
            reuse=cfg.c2c.buffer_reuse,
        )
        self._x: F32 = np.full(n, _initial_state(cfg), dtype=np.float32)
        self._stuck.pin(self._x)
        self._age: F64 = np.zeros(n) if cfg.drift.enabled else np.zeros(0)
        self._time_s = 0.0
        # Per-device energy: float64 total plus a float32 accumulator flushed every
        # _ENERGY_FLUSH plans (adding into float64 every plan would cost a full extra pass).
        self._energy: F64 = np.zeros(n)
        self._energy_pending: F32 = np.zeros(n, dtype=np.float32)
        self._energy_pending_plans = 0
        self._last_energy_j = 0.0
        self._terms_cache: dict[tuple[float, float], ShapeTerms | None] = {}
        self._delta_cache: dict[tuple[tuple[float, float], tuple[float, float]], F32] = {}
        self._g_low = self._dev.g_low
        self._g_high = self._dev.g_high
        self._g_cache: F64 | None = None
        self._lo32 = self._dev.lo.astype(np.float32)
        self._scaled: tuple[float, F32, F32] | None = None
        self._span32 = self._dev.span.astype(np.float32)
        self._buffers: dict[str, F32] = {}

    # -- simulator extras (not part of the backend contract) ------------------------------
    @property
    def time_s(self) -> float:
        """Simulated time elapsed through `elapse()`, in seconds."""
        return self._time_s

    @property
    def energy_j(self) -> F64:
        """Programming energy delivered to each device so far, sum of V^2 G t (J), (rows, cols)."""
        return (self._energy + self._energy_pending).reshape(self.shape)

    @property
    def total_energy_j(self) -> float:
        return float(self._energy.sum() + self._energy_pending.sum(dtype=np.float64))

    @property
    def last_plan_energy_j(self) -> float:
        """Energy estimate of the most recent plan, at the conductances before it."""
        return self._last_energy_j

    @property
    def stuck_mask(self) -> NDArray[np.bool_]:
        """True for devices with a stuck-at fault, (rows, cols)."""
        return self._stuck.mask(self._n).reshape(self.shape)

    def pulse_energy_j(self, shape: PulseShape) -> F64:
        """Energy of one pulse of `shape` on each device at its present conductance, V^2 G t."""
        return shape.amplitude_v**2 * shape.width_s * self.conductances()

    def conductances(self) -> F64:
        """True conductances (S) of all devices without read noise, (rows, cols) (a copy)."""
        self._check_open()
        return self._true_g().copy()

    def _true_g(self) -> F64:
        """True conductances, recomputed only after the state changed (read-only view)."""
        if self._g_cache is None:
            g = np.clip(self._dev.conductance(self._x), self._g_low, self._g_high)
            g = g.reshape(self.shape)
            g.setflags(write=False)
            self._g_cache = g
        return self._g_cache

    def device_bounds(self) -> tuple[F64, F64]:
        """Per-device lowest and highest conductance (S), each (rows, cols)."""
        return self._g_low.reshape(self.shape).copy(), self._g_high.reshape(self.shape).copy()

    def states(self) -> F32:
        """Normalised device states x in [0, 1], (rows, cols) (a copy)."""
        return self._x.reshape(self.shape).copy()

    def elapse(self, seconds: float) -> None:
        """Let `seconds` pass: retention drift acts on every device (if configured)."""
        self._check_open()
        if not np.isfinite(seconds) or seconds < 0:
            raise ValueError(f"elapsed time must be finite and >= 0 s, got {seconds!r}")
        if self.config.drift.enabled and seconds > 0:
            self._g_cache = None
            apply_drift(
                self.config.drift, self._dev, self._x, self._age, self._nu, seconds, self._rng
            )
            self._stuck.pin(self._x)
        self._time_s += float(seconds)

    # -- hooks -----------------------------------------------------------------------------
    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> F64:
        g = self._true_g()[np.ix_(rows, cols)]
        g = noisy_conductance(g, self.config.readout.read_sigma, self._rng)
        return reported(g, self.config.readout)

    def _mvm(self, voltages: F64, transpose: bool) -> F64:
        g = self._true_g()
        mat = g.T if transpose else g
        return analog_product(voltages, mat, self.config.readout, self.config.g_max_s, self._rng)

    def _info(self) -> BackendInfo:
        cfg = self.config
        return BackendInfo(
            name=f"sim:{cfg.name}",
            kind="sim",
            rows=self._rows,
            cols=self._cols,
            g_min_s=cfg.g_min_s,
            g_max_s=cfg.g_max_s,
            supports_mvm=True,
            supports_snapshot=True,
            supports_row_parallel=True,
            bias_schemes=("none", "v2", "v3"),
            details={
                "preset": cfg.name,
                "seed": self.seed,
                "model": cfg.model.kind,
                "set_pulse": cfg.set_pulse.model_dump(),
                "reset_pulse": cfg.reset_pulse.model_dump(),
                "threshold_set_v": cfg.threshold_set_v,
                "threshold_reset_v": cfg.threshold_reset_v,
                "initial": cfg.initial,
                "stuck_devices": self._stuck.count,
                "config_digest": cfg.digest(),
            },
        )

    def _snapshot(self) -> dict[str, Any]:
        return {
            "config_digest": self.config.digest(),
            "seed": self.seed,
            "x": self._x.copy(),
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "noise": copy.deepcopy(self._noise.state()),
            "age": self._age.copy(),
            "time_s": self._time_s,
            "energy": self._energy.copy(),
            "energy_pending": self._energy_pending.copy(),
            "energy_pending_plans": self._energy_pending_plans,
            "last_energy_j": self._last_energy_j,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("config_digest") != self.config.digest() or state.get("seed") != self.seed:
            raise ValueError(
                "snapshot was taken from a simulated crossbar with another device configuration "
                "or seed"
            )
        x = np.asarray(state["x"], dtype=np.float32)
        if x.shape != self._x.shape:
            raise ValueError(f"snapshot holds {x.size} devices, crossbar has {self._n}")
        self._x = x.copy()
        self._g_cache = None
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._noise.set_state(copy.deepcopy(state["noise"]))
        self._age = np.asarray(state["age"], dtype=np.float64).copy()
        self._time_s = float(state["time_s"])
        self._energy = np.asarray(state["energy"], dtype=np.float64).copy()
        self._energy_pending = np.asarray(state["energy_pending"], dtype=np.float32).copy()
        self._energy_pending_plans = int(state["energy_pending_plans"])
        self._last_energy_j = float(state["last_energy_j"])

    # -- the pulse engine ------------------------------------------------------------------
    def _buf(self, name: str) -> F32:
        buf = self._buffers.get(name)
        if buf is None:
            buf = np.empty(self._n, dtype=np.float32)
            self._buffers[name] = buf
        return buf

    def _terms(self, amplitude_v: float, width_s: float) -> ShapeTerms | None:
        key = (float(amplitude_v), float(width_s))
        if key in self._terms_cache:
            return self._terms_cache[key]
        terms = shape_terms(self.config, self._dev, amplitude_v, width_s)
        if len(self._terms_cache) >= _CACHE_SHAPES:
            self._terms_cache.pop(next(iter(self._terms_cache)))
            self._delta_cache.clear()
        self._terms_cache[key] = terms
        return terms

    def _apply(self, plan: PulsePlan) -> None:
        self._g_cache = None
        cfg = self.config
        x = self._x
        groups = plan.groups
        # Pulse counts as float32, once per group; reused by energy, update and noise.
        floats: list[F32] = []
        for k, group in enumerate(groups):
            f = self._buf(f"f{k}")
            np.copyto(f, group.counts.reshape(-1), casting="unsafe")
            floats.append(f)
        # Pulses per device, when every group has the same V^2 t (the usual SET + RESET pair):
        # the energy needs only this sum, and so does the noise of a disjoint update.
        doses = [group.shape.amplitude_v**2 * group.shape.width_s for group in groups]
        pulses: F32 | None = None
        if len(set(doses)) == 1:
            if len(floats) == 1:
                pulses = floats[0]
            else:
                pulses = self._buf("pulses")
                np.add(floats[0], floats[1], out=pulses)
                for f in floats[2:]:
                    pulses += f
        self._account_energy(doses, floats, pulses)
        live: list[tuple[F32, ShapeTerms, tuple[float, float]]] = []
        for k, (group, f) in enumerate(zip(groups, floats, strict=True)):
            if k:  # a test-only kill between two groups (the array lives in memory)
                crash_point("plan.group")
            key = (float(group.shape.amplitude_v), float(group.shape.width_s))
            terms = self._terms(*key)
            if terms is not None:
                live.append((f, terms, key))
        factor = None
        if cfg.endurance.enabled:
            factor = endurance_factor(cfg.endurance, self._pulse_counts.reshape(-1))
        if live:
            if _disjoint([f for f, _, _ in live]):
                shared = pulses
                if len(live) != len(floats) or any(t.gate is not None for _, t, _ in live):
                    shared = None
                self._update(live, factor, noise=True, pulses=shared)
            else:
                for item in live:
                    self._update([item], factor, noise=True)
        if plan.bias != "none" and cfg.disturb.enabled:
            self._disturb(plan, factor)
        if cfg.levels is not None:
            top = np.float32(cfg.levels - 1)
            x *= top
            np.rint(x, out=x)
            x /= top
        self._stuck.pin(x)
        if cfg.drift.enabled:
            self._age[plan.counts_per_device().reshape(-1) > 0] = 0.0

    def _scaled_map(self, dose: float) -> tuple[F32, F32]:
        """(lo, span) of the conductance map scaled by `dose` = V^2 t (one cached entry)."""
        if self._scaled is None or self._scaled[0] != dose:
            d = np.float32(dose)
            self._scaled = (dose, self._lo32 * d, self._span32 * d)
        return self._scaled[1], self._scaled[2]

    def _account_energy(self, doses: list[float], floats: list[F32], pulses: F32 | None) -> None:
        """Energy V^2 G t per pulse, at the conductances before the plan."""
        w = self._buf("w")
        g0 = self._buf("g0")
        if pulses is not None:
            # One dose for all groups: w = n * dose * G0.
            if self._dev.g_map == "linear":
                lo, span = self._scaled_map(doses[0])  # G0 = lo + span * x
                np.multiply(span, self._x, out=g0)
                g0 += lo
            else:
                np.multiply(self._span32, self._x, out=g0)  # G0 = 1 / (lo - span * x)
                np.subtract(self._lo32, g0, out=g0)
                np.divide(np.float32(doses[0]), g0, out=g0)
            np.multiply(pulses, g0, out=w)
        else:
            tmp = self._buf("tmp")
            for k, (dose, f) in enumerate(zip(doses, floats, strict=True)):
                if k == 0:
                    np.multiply(f, np.float32(dose), out=w)
                else:
                    np.multiply(f, np.float32(dose), out=tmp)
                    w += tmp
            np.multiply(self._span32, self._x, out=g0)
            if self._dev.g_map == "linear":
                g0 += self._lo32
            else:
                np.subtract(self._lo32, g0, out=g0)
                np.reciprocal(g0, out=g0)
            w *= g0
        self._last_energy_j = float(w.sum())
        self._energy_pending += w
        self._energy_pending_plans += 1
        if self._energy_pending_plans >= _ENERGY_FLUSH:
            self._energy += self._energy_pending
            self._energy_pending.fill(0.0)
            self._energy_pending_plans = 0

    def _disturb(self, plan: PulsePlan, factor: F32 | None) -> None:
        """Half-selected devices see a fraction of each pulse; only pulses that move some
        device at that fraction cost anything (below threshold they are skipped)."""
        fraction = 0.5 if plan.bias == "v2" else 1.0 / 3.0
        for group in plan.groups:
            amp = group.shape.amplitude_v
            width = group.shape.width_s
            moves = self._terms(fraction * amp, width) is not None or (
                plan.bias == "v3" and self._terms(-fraction * amp, width) is not None
            )
            if not moves or group.total == 0:
                continue
            counts = self._buf("fd")
            np.copyto(counts, group.counts.reshape(-1), casting="unsafe")
            out = (
                self._buf("hs_line").reshape(self.shape),
                self._buf("hs_other").reshape(self.shape),
            )
            for hs in half_selects(counts.reshape(self.shape), plan.bias, group.parallel, out=out):
                key = (hs.sign * hs.fraction * amp, width)
                terms = self._terms(*key)
                if terms is None:
                    continue
                self._update([(hs.counts.reshape(-1), terms, key)], factor, noise=False)

    def _xinf_delta(self, base: tuple[float, float], other: tuple[float, float]) -> F32:
        key = (base, other)
        delta = self._delta_cache.get(key)
        if delta is None:
            b = self._terms(*base)
            o = self._terms(*other)
            assert b is not None and o is not None
            delta = (o.xinf - b.xinf).astype(np.float32)
            if len(self._delta_cache) >= _CACHE_SHAPES:
                self._delta_cache.pop(next(iter(self._delta_cache)))
            self._delta_cache[key] = delta
        return delta

    def _update(
        self,
        items: list[tuple[F32, ShapeTerms, tuple[float, float]]],
        factor: F32 | None,
        *,
        noise: bool,
        pulses: F32 | None = None,
    ) -> None:
        """One exact update of every device by pulse groups that touch disjoint devices:
        x += (x - x_inf) * expm1(n * lam), plus sigma * sqrt(n) * N(0, 1), then clip."""
        x = self._x
        t = self._buf("t")
        tmp = self._buf("tmp")
        f0, terms0, key0 = items[0]
        np.multiply(f0, terms0.lam, out=t)
        for f, terms, _ in items[1:]:
            np.multiply(f, terms.lam, out=tmp)
            t += tmp
        if len(items) == 1:
            xinf = terms0.xinf
        else:
            # x_inf of the group that pulses each device: base + [n_k > 0] * (x_inf_k - base).
            xinf = self._buf("xinf")
            for k, (f, _, key) in enumerate(items[1:]):
                np.minimum(f, np.float32(1.0), out=tmp)
                if k == 0:
                    np.multiply(tmp, self._xinf_delta(key0, key), out=xinf)
                else:
                    tmp *= self._xinf_delta(key0, key)
                    xinf += tmp
            xinf += terms0.xinf
        if factor is not None:
            t *= factor
        c2c = self.config.c2c
        mult_var: F64 | None = None
        if noise and c2c.sigma > 0.0 and c2c.form == "multiplicative":
            mult_var = self._step_square_sum(items, t, xinf)
        # A convex curve (lam > 0) driven far past its bound overflows to +-inf, which the
        # final clip turns into the bound; x - x_inf is never 0 there (x_inf lies outside
        # [0, 1]), so no inf * 0 arises.
        with np.errstate(over="ignore"):
            np.expm1(t, out=t)
            np.subtract(x, xinf, out=tmp)
            tmp *= t
            x += tmp
        sigma = c2c.sigma if noise else 0.0
        if mult_var is not None:
            z, sign = self._noise.draw(self._n)
            x += (sign * sigma) * (np.sqrt(mult_var) * z).astype(np.float32)
        elif sigma > 0.0:
            n = self._buf("n")
            if pulses is not None:
                np.multiply(pulses, np.float32(sigma * sigma), out=n)
            else:
                for f, terms, _ in items:
                    if terms.gate is not None:
                        f *= terms.gate  # sub-threshold devices get no pulse, so no noise
                if len(items) == 1:
                    n[:] = items[0][0]
                else:
                    np.add(items[0][0], items[1][0], out=n)
                    for f, _, _ in items[2:]:
                        n += f
                n *= np.float32(sigma * sigma)
            np.sqrt(n, out=n)
            if factor is not None:
                n *= factor
            z, sign = self._noise.draw(self._n)
            n *= z
            if sign > 0:
                x += n
            else:
                x -= n
        np.clip(x, 0.0, 1.0, out=x)

    def _step_square_sum(
        self, items: list[tuple[F32, ShapeTerms, tuple[float, float]]], t: F32, xinf: F32
    ) -> F64:
        """sum_k d_k^2 of the n mean steps each device is about to take (multiplicative C2C).

        With r = e^lam per pulse, d_k = (x - x_inf)(r - 1) r^k, so the sum is
        (x - x_inf)^2 tanh(lam / 2) expm1(2 n lam), with n lam = t (endurance included).
        Computed in float64 before the update; devices without pulses get 0.
        """
        n = np.zeros(self._n)
        for f, terms, _ in items:
            n += f if terms.gate is None else f * terms.gate
        t64 = t.astype(np.float64)
        per_pulse = np.divide(t64, n, out=np.zeros(self._n), where=n > 0)
        d = self._x.astype(np.float64) - xinf.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            var = d * d * np.tanh(0.5 * per_pulse) * np.expm1(2.0 * t64)
        # A convex curve run past its bound overflows; the clip that follows ends it there.
        return np.nan_to_num(np.maximum(var, 0.0), posinf=0.0)


def _disjoint(counts: list[F32]) -> bool:
    """True when no device is counted in more than one group (counts are >= 0, so a zero dot
    product of two count vectors means no common device; BLAS makes this nearly free)."""
    return all(
        float(np.dot(counts[i], counts[j])) == 0.0
        for i in range(len(counts))
        for j in range(i + 1, len(counts))
    )
