"""Backend construction for training runs: the one place that turns a run config into an array.

`open_backend` builds the simulated crossbar, or hands visa/serial configs to
`drivers.open_backend`. `device_model` resolves what the planner needs to know about the
devices (mean response curve, nominal SET/RESET pulses, safety limits) from the protocol file
when one is given, else from the simulator preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hil.insitu.run_config import RunConfig
from protocols.backend import BackendError, CrossbarBackend
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits, check_plan
from protocols.plan import PulseGroup, PulsePlan
from protocols.protocol_file import load_protocol
from protocols.response import DeviceResponse
from protocols.spec import ProportionalScheme, Pulse, PulsePair, Scheme


@dataclass(frozen=True)
class DeviceModel:
    """What the controller assumes about the devices, and what it may never send."""

    response: DeviceResponse
    pulses: PulsePair
    limits: SafetyLimits
    scheme: Scheme
    source: str


def _preset(name: str) -> Any:
    """A built-in preset by name, or a preset file (`mrnn-hil devices fit`) by path."""
    from sim_backend import PRESETS, get_preset
    from sim_backend.presets import is_preset_file

    if name not in PRESETS and not is_preset_file(name):
        raise InputError(
            f"backend.preset: unknown simulator preset {name!r}; choose one of "
            f"{', '.join(sorted(PRESETS))}, or give a preset file (.yaml/.yml/.json)"
        )
    try:
        return get_preset(name)
    except InputError as exc:
        raise InputError(f"backend.preset: {exc}") from None


def device_model(cfg: RunConfig) -> DeviceModel:
    """Resolve response, pulses, limits and scheme; refuse inconsistent ones before any pulse."""
    preset = _preset(cfg.backend.preset)
    response: DeviceResponse
    if isinstance(cfg.response, str):
        from protocols.fitted_response import load_fitted_response

        response = load_fitted_response(cfg.response)
        origin = f"response fitted in {cfg.response}"
    elif cfg.response is not None:
        response = cfg.response
        origin = "response from the run config"
    else:
        from sim_backend import mean_response

        response = mean_response(preset)
        origin = f"response of preset {cfg.backend.preset}"
    if cfg.protocol is not None:
        proto = load_protocol(cfg.protocol)
        pulses = proto.pulses
        limits: SafetyLimits = cfg.limits or proto.limits.safety_limits()
        scheme: Scheme = cfg.scheme or proto.scheme
        source = f"protocol {cfg.protocol}"
    else:
        pulses = PulsePair(
            set=Pulse(
                amplitude_v=float(preset.set_pulse.amplitude_v),
                width_s=float(preset.set_pulse.width_s),
            ),
            reset=Pulse(
                amplitude_v=float(preset.reset_pulse.amplitude_v),
                width_s=float(preset.reset_pulse.width_s),
            ),
        )
        if cfg.limits is not None:
            limits = cfg.limits
        elif cfg.backend.kind == "sim":  # the simulated device's own pulses must pass
            from sim_backend import default_limits

            limits = default_limits(preset)
        else:  # an instrument without a protocol: the conservative defaults
            limits = SafetyLimits()
        scheme = cfg.scheme or ProportionalScheme(kind="proportional")
        source = f"preset {cfg.backend.preset}"
    preflight(pulses, limits, response)
    return DeviceModel(response, pulses, limits, scheme, f"{source}; {origin}")


def preflight(pulses: PulsePair, limits: SafetyLimits, response: DeviceResponse) -> None:
    """Check one nominal SET and one RESET pulse at G_max against the limits (no I/O)."""
    import numpy as np

    g = np.full((1, 1), response.g_max_s)
    for polarity in (+1, -1):
        plan = PulsePlan.from_groups(
            (1, 1), [PulseGroup(pulses.shape(polarity), np.ones((1, 1), dtype=np.int64))]
        )
        try:
            check_plan(plan, limits, conductance_s=g)
        except LimitViolation as exc:
            kind = "SET" if polarity > 0 else "RESET"
            raise InputError(f"the nominal {kind} pulse breaks the safety limits: {exc}") from None


def open_backend(cfg: RunConfig, rows: int, cols: int, limits: SafetyLimits) -> CrossbarBackend:
    """The crossbar the run trains on (seeded from the run seed on the simulator)."""
    kind = cfg.backend.kind
    if kind == "sim":
        from sim_backend import SimulatedCrossbar

        _preset(cfg.backend.preset)
        try:
            return SimulatedCrossbar(
                rows,
                cols,
                preset=cfg.backend.preset,
                seed=cfg.seed,
                limits=limits,
                **dict(cfg.backend.options),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"backend.options: {exc}") from None
    try:
        from drivers import open_backend as open_instrument
    except ImportError as exc:
        raise InputError(f"backend.kind={kind!r}: instrument drivers are not available") from exc
    options: dict[str, Any] = dict(cfg.backend.options)
    if cfg.backend.resource is not None:
        options["resource"] = cfg.backend.resource
    if cfg.backend.port is not None:
        options["port"] = cfg.backend.port
    try:
        backend: CrossbarBackend = open_instrument(
            kind,
            rows=rows,
            cols=cols,
            limits=limits,
            preset=cfg.backend.preset,
            seed=cfg.seed,
            **options,
        )
    except BackendError as exc:  # no link, wrong port, wrong identity: nothing was sent
        where = cfg.backend.port or cfg.backend.resource or "the instrument"
        raise InputError(f"backend {kind}: cannot open {where}: {exc}") from None
    return backend
