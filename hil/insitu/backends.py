"""Backend construction for training runs: the one place that turns a run config into an array.

`device_model` resolves what the planner needs to know about the devices (mean response
curve) and the run's safety envelope (`protocols.envelope.resolve_envelope`: the protocol's
limits with the run config's override laid on them, nominal pulses, scheme, read voltage),
from the protocol file when one is given, else from the simulator preset. `open_backend`
hands every kind (sim, visa, serial) to `drivers.open_backend`, with the envelope's limits
and read voltage and the devices' block inside the array; `check_backend` compares the
opened backend's declared capabilities with what the run will ask of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hil.insitu.run_config import RunConfig
from protocols.backend import BackendError, CrossbarBackend
from protocols.envelope import Envelope, check_compatible, resolve_envelope
from protocols.errors import InputError
from protocols.limits import DEFAULT_READ_V, LimitViolation, SafetyLimits, check_plan
from protocols.plan import PulseGroup, PulsePlan
from protocols.protocol_file import load_protocol_text
from protocols.response import DeviceResponse
from protocols.spec import ProportionalScheme, Pulse, PulsePair, Scheme

log = logging.getLogger(__name__)

#: The backend option that asks for a read voltage (it may only lower the protocol's).
READ_OPTION = "read_v"


@dataclass(frozen=True)
class DeviceModel:
    """What the controller assumes about the devices, and what it may never send."""

    response: DeviceResponse
    envelope: Envelope
    source: str
    #: the protocol file's text the envelope was resolved from (None: no protocol file)
    protocol_text: str | None = None

    @property
    def pulses(self) -> PulsePair:
        return self.envelope.pulses

    @property
    def limits(self) -> SafetyLimits:
        return self.envelope.limits

    @property
    def scheme(self) -> Scheme:
        return self.envelope.scheme


def _preset(name: str) -> Any:
    from drivers.factory import check_preset
    from sim_backend import get_preset

    check_preset(name, "backend.preset")
    return get_preset(name)


def read_option(cfg: RunConfig) -> float | None:
    """The read voltage the run config's backend options ask for, if any."""
    value = cfg.backend.options.get(READ_OPTION)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"backend option {READ_OPTION}={value!r}: expected a number of volts")
    return float(value)


def device_model(cfg: RunConfig) -> DeviceModel:
    """Resolve response and safety envelope; refuse inconsistent ones before any pulse."""
    from sim_backend.crossbar import switching_threshold

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
    text: str | None = None
    if cfg.protocol is not None:
        proto, text = load_protocol_text(cfg.protocol)
        pulses = proto.pulses
        base = proto.limits.safety_limits()
        read_v = proto.read.voltage_v
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
        base = SafetyLimits()
        read_v = DEFAULT_READ_V
        scheme = cfg.scheme or ProportionalScheme(kind="proportional")
        source = f"preset {cfg.backend.preset}"
    envelope = resolve_envelope(
        pulses=pulses,
        base_limits=base,
        scheme=scheme,
        read_v=read_v,
        override=cfg.limits,
        read_override_v=read_option(cfg),
        switching_v=switching_threshold(preset),
        base_source=source if cfg.protocol is not None else "the built-in limits",
    )
    preflight(pulses, envelope.limits, response)
    return DeviceModel(response, envelope, f"{source}; {origin}", text)


def raised_note(envelope: Envelope) -> str | None:
    """One line naming each limit raised on purpose, or None."""
    if not envelope.raised:
        return None
    changes = ", ".join(c.describe() for c in envelope.raised)
    return f"limits raised on purpose above {envelope.base_source} (allow_raise): {changes}"


def announce_raised(envelope: Envelope, notify: Callable[[str], None] | None = None) -> None:
    """Say which limits were raised on purpose: `notify(note)` (the command line prints it on
    stderr), else a logged warning."""
    note = raised_note(envelope)
    if note is None:
        return
    if notify is not None:
        notify(note)
    else:
        log.warning("%s", note)


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


def open_backend(cfg: RunConfig, rows: int, cols: int, envelope: Envelope) -> CrossbarBackend:
    """The `rows x cols` devices the run trains on, with the envelope's limits and read
    voltage: `drivers.open_backend` builds every kind (the simulator seeded from the run
    seed), inside the array's real shape (backend options `array`, `block`)."""
    from drivers import open_backend as open_array

    kind = cfg.backend.kind
    options: dict[str, Any] = dict(cfg.backend.options)
    options.pop(READ_OPTION, None)  # resolved into the envelope
    if cfg.backend.resource is not None:
        options["resource"] = cfg.backend.resource
    if cfg.backend.port is not None:
        options["port"] = cfg.backend.port
    from drivers.board_block import ArrayTooSmall

    try:
        backend: CrossbarBackend = open_array(
            kind,
            rows=rows,
            cols=cols,
            limits=envelope.limits,
            read_v=envelope.read_v,
            preset=cfg.backend.preset,
            seed=cfg.seed,
            require_array=True,
            **options,
        )
    except ArrayTooSmall as exc:
        from hil.insitu.mapping import what_fits

        m = cfg.mapping
        layout = m.layout + (", no diagonal" if m.layout == "symmetric" and not m.diagonal else "")
        raise InputError(
            f"{exc}: N = {rows} units with mapping.layout {layout} need {rows} x {cols} "
            f"devices. What fits: {what_fits(*exc.board)}"
        ) from None
    except BackendError as exc:  # no link, wrong port, wrong identity: nothing was sent
        where = cfg.backend.port or cfg.backend.resource or "the instrument"
        raise InputError(f"backend {kind}: cannot open {where}: {exc}") from None
    return backend


def check_backend(
    backend: CrossbarBackend, envelope: Envelope, extra: Sequence[Scheme] = ()
) -> None:
    """Refuse (and close) a backend that cannot do what the run will ask of it: its bias
    schemes, pulse widths, amplitudes and parallel phases, before the first pulse."""
    try:
        check_compatible(envelope, backend.info(), extra)
    except InputError:
        backend.close()
        raise
