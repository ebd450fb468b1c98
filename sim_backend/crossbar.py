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
from protocols.limits import SafetyLimits
from protocols.plan import PulsePlan, PulseShape
from sim_backend.aging import apply_drift, drift_exponents, endurance_factor
from sim_backend.config import DeviceConfig
from sim_backend.devices import DeviceArrays, ShapeTerms, build_devices, shape_terms
from sim_backend.disturb import half_selects
from sim_backend.faults import StuckDevices, draw_stuck
from sim_backend.noise import GaussianSource
from sim_backend.presets import get_preset
from sim_backend.readout import analog_product, noisy_conductance

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

_CACHE_SHAPES = 32


def default_limits(cfg: DeviceConfig) -> SafetyLimits:
    """Conservative defaults, widened to let the device's own nominal pulses (and ISPP steps up
    to 1.5x their amplitude) through."""
    base = SafetyLimits()
    return SafetyLimits(
        max_set_v=max(base.max_set_v, 1.5 * cfg.set_pulse.amplitude_v),
        max_reset_v=max(base.max_reset_v, 1.5 * abs(cfg.reset_pulse.amplitude_v)),
        max_width_s=max(
            base.max_width_s, 10.0 * cfg.set_pulse.width_s, 10.0 * cfg.reset_pulse.width_s
        ),
    )


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
        **overrides: Any,
    ) -> None:
        if isinstance(preset, str):
            cfg = get_preset(preset)
        elif isinstance(preset, DeviceConfig):
            cfg = preset
        else:
            raise TypeError(f"preset must be a name or a DeviceConfig, got {type(preset).__name__}")
        cfg = cfg.with_overrides(**overrides)
        super().__init__(rows, cols, limits=limits if limits is not None else default_limits(cfg))
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
        self._nu = drift_exponents(cfg.drift, n, np.random.Generator(np.random.PCG64(s_drift)))
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
        self._energy: F64 = np.zeros(n)
        self._last_energy_j = 0.0
        self._terms_cache: dict[tuple[float, float], ShapeTerms | None] = {}
        self._lo32 = self._dev.lo.astype(np.float32)
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
        return self._energy.reshape(self.shape).copy()

    @property
    def total_energy_j(self) -> float:
        return float(self._energy.sum())

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
        """True conductances (S) of all devices without read noise, (rows, cols)."""
        self._check_open()
        return np.clip(self._dev.conductance(self._x), self._dev.g_low, self._dev.g_high).reshape(
            self.shape
        )

    def device_bounds(self) -> tuple[F64, F64]:
        """Per-device lowest and highest conductance (S), each (rows, cols)."""
        return self._dev.g_low.reshape(self.shape), self._dev.g_high.reshape(self.shape)

    def states(self) -> F32:
        """Normalised device states x in [0, 1], (rows, cols) (a copy)."""
        return self._x.reshape(self.shape).copy()

    def elapse(self, seconds: float) -> None:
        """Let `seconds` pass: retention drift acts on every device (if configured)."""
        self._check_open()
        if not np.isfinite(seconds) or seconds < 0:
            raise ValueError(f"elapsed time must be finite and >= 0 s, got {seconds!r}")
        if self.config.drift.enabled and seconds > 0:
            apply_drift(
                self.config.drift, self._dev, self._x, self._age, self._nu, seconds, self._rng
            )
            self._stuck.pin(self._x)
        self._time_s += float(seconds)

    # -- hooks -----------------------------------------------------------------------------
    def _g_block(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> F64:
        flat = (rows[:, None] * self._cols + cols[None, :]).ravel()
        x = self._x[flat].astype(np.float64)
        lo = self._dev.lo[flat]
        span = self._dev.span[flat]
        g = lo + span * x if self._dev.g_map == "linear" else 1.0 / (lo - span * x)
        return g.reshape(rows.size, cols.size)

    def _read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> F64:
        g = self._g_block(rows, cols)
        return noisy_conductance(g, self.config.readout.read_sigma, self._rng)

    def _mvm(self, voltages: F64, transpose: bool) -> F64:
        g = self.conductances()
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
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._noise.set_state(copy.deepcopy(state["noise"]))
        self._age = np.asarray(state["age"], dtype=np.float64).copy()
        self._time_s = float(state["time_s"])
        self._energy = np.asarray(state["energy"], dtype=np.float64).copy()
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
        self._terms_cache[key] = terms
        return terms

    def _apply(self, plan: PulsePlan) -> None:
        x = self._x
        cfg = self.config
        # Energy at the conductances before the plan: sum over groups of V^2 t n G.
        g0 = self._buf("g0")
        if self._dev.g_map == "linear":
            np.multiply(self._span32, x, out=g0)
            g0 += self._lo32
        else:
            np.clip(self._dev.conductance(x), 0.0, None, out=g0, casting="unsafe")
        dose = self._buf("dose")
        dose.fill(0.0)
        fbuf = self._buf("f")
        entries: list[tuple[NDArray[np.int64], ShapeTerms]] = []
        for group in plan.groups:
            counts = group.counts.reshape(-1)
            np.copyto(fbuf, counts, casting="unsafe")
            fbuf *= np.float32(group.shape.amplitude_v**2 * group.shape.width_s)
            dose += fbuf
            terms = self._terms(group.shape.amplitude_v, group.shape.width_s)
            if terms is not None:
                entries.append((counts, terms))
        dose *= g0
        self._last_energy_j = float(dose.sum(dtype=np.float64))
        self._energy += dose

        factor = None
        if cfg.endurance.enabled:
            factor = endurance_factor(cfg.endurance, self._pulse_counts.reshape(-1))
        if entries:
            masks = [counts > 0 for counts, _ in entries]
            if len(entries) == 1 or _disjoint(masks):
                self._pass(entries, masks, factor, noise=True)
            else:
                for entry, mask in zip(entries, masks, strict=True):
                    self._pass([entry], [mask], factor, noise=True)
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
            for hs in half_selects(group.counts, plan.bias, group.parallel):
                terms = self._terms(hs.sign * hs.fraction * amp, width)
                if terms is None:
                    continue
                counts = hs.counts.reshape(-1)
                self._pass([(counts, terms)], [counts > 0], factor, noise=False)

    def _pass(
        self,
        entries: list[tuple[NDArray[np.int64], ShapeTerms]],
        masks: list[NDArray[np.bool_]],
        factor: F32 | None,
        *,
        noise: bool,
    ) -> None:
        """One exact update of every device by groups that touch disjoint devices."""
        x = self._x
        t = self._buf("t")
        tmp = self._buf("tmp")
        nsum = self._buf("n")
        f = self._buf("f")
        sigma = self.config.c2c.sigma if noise else 0.0
        first = True
        xinf: F32
        for (counts, terms), mask in zip(entries, masks, strict=True):
            np.copyto(f, counts, casting="unsafe")
            if first:
                np.multiply(f, terms.lam, out=t)
            else:
                np.multiply(f, terms.lam, out=tmp)
                t += tmp
            if sigma > 0.0:
                if terms.gate is not None:
                    f *= terms.gate
                if first:
                    nsum[:] = f
                else:
                    nsum += f
            if len(entries) == 1:
                xinf = terms.xinf
            else:
                xinf = self._buf("xinf")
                if first:
                    xinf[:] = terms.xinf
                else:
                    np.copyto(xinf, terms.xinf, where=mask)
            first = False
        if factor is not None:
            t *= factor
        np.expm1(t, out=t)
        np.subtract(x, xinf, out=tmp)
        tmp *= t
        x += tmp
        if sigma > 0.0:
            np.sqrt(nsum, out=nsum)
            if factor is not None:
                nsum *= factor
            z, sign = self._noise.draw(self._n)
            np.multiply(z, np.float32(sign * sigma), out=tmp)
            nsum *= tmp
            x += nsum
        np.clip(x, 0.0, 1.0, out=x)


def _disjoint(masks: list[NDArray[np.bool_]]) -> bool:
    """True when no device is counted in more than one of the groups."""
    if len(masks) == 2:
        return not np.any(masks[0] & masks[1])
    total = masks[0].astype(np.uint8)
    for mask in masks[1:]:
        total += mask
    return int(total.max()) <= 1
