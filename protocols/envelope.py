"""The safety envelope of a run, resolved once, and the check of a backend against it.

Every command that sends pulses (`train` from options, a `--config` or a `--resume`,
`characterize`) calls `resolve_envelope` with what it was given, before it opens anything:
the protocol's limits (or the built-in ones) with a run config's partial override laid on
them (`merge_limits`: tighten freely, raise only what `allow_raise` names, never past the
hard ceilings), the scheme and the nominal pulses checked together against those effective
limits (the rules of a protocol file, so a run config's write-verify ISPP steps cannot climb
past them), and the read voltage checked against the limits and the switching threshold.
`check_compatible` then compares what the run will ask for (bias schemes, widths,
amplitudes, parallel phases) with what the opened backend declares in its `BackendInfo`,
before the run directory exists and before the first pulse. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocols.backend import BackendInfo
from protocols.errors import InputError
from protocols.limits import (
    LimitChange,
    LimitsOverride,
    MergedLimits,
    SafetyLimits,
    check_read_voltage,
    merge_limits,
)
from protocols.plan import BiasScheme
from protocols.spec import (
    OuterProductScheme,
    PulsePair,
    Scheme,
    WriteVerifyScheme,
    check_consistent,
    ispp_top,
    scheme_bias,
)


@dataclass(frozen=True)
class Envelope:
    """What a run may send: effective limits, read voltage, nominal pulses and scheme."""

    limits: SafetyLimits
    read_v: float
    pulses: PulsePair
    scheme: Scheme
    switching_v: float | None
    merged: MergedLimits
    base_source: str

    @property
    def raised(self) -> tuple[LimitChange, ...]:
        return self.merged.raised

    @property
    def tightened(self) -> tuple[LimitChange, ...]:
        return self.merged.tightened

    def pinned_limits(self) -> LimitsOverride:
        """The override a resolved config keeps: reproduces these limits from the same base."""
        return self.merged.pinned()


def resolve_envelope(
    *,
    pulses: PulsePair,
    base_limits: SafetyLimits,
    scheme: Scheme,
    read_v: float,
    override: LimitsOverride | None = None,
    read_override_v: float | None = None,
    switching_v: float | None = None,
    base_source: str = "the protocol",
) -> Envelope:
    """The one resolution of a run's safety envelope; InputError naming the problem.

    `base_limits` and `read_v` are the protocol's (or the built-in defaults when there is
    no protocol file), `override` a run config's `limits:`, `read_override_v` a read voltage
    asked for elsewhere (backend option `read_v`): it may only lower the protocol's.
    `switching_v` is the device's smaller switching threshold when known.
    """
    merged = merge_limits(base_limits, override, base_source=base_source)
    limits = merged.limits
    if read_override_v is not None:
        if read_override_v > read_v:
            raise InputError(
                f"backend option read_v = {read_override_v:g} V is above the read voltage of "
                f"{base_source} ({read_v:g} V); an option may only lower it (raise it in the "
                "protocol file's read.voltage_v)"
            )
        read_v = read_override_v
    try:
        check_consistent(pulses, read_v, limits, scheme)
    except ValueError as exc:
        raise InputError(f"with the effective limits: {exc}") from None
    nominal = min(pulses.set.amplitude_v, -pulses.reset.amplitude_v)
    check_read_voltage(read_v, limits, switching_v=switching_v, nominal_v=nominal)
    return Envelope(limits, read_v, pulses, scheme, switching_v, merged, base_source)


@dataclass(frozen=True)
class Requirements:
    """What a run will ask of a backend, at most."""

    bias: tuple[BiasScheme, ...]
    parallel: bool
    min_width_s: float
    max_width_s: float
    max_set_v: float
    max_reset_v: float


def requirements(
    envelope: Envelope, extra: Sequence[Scheme] = (), *, with_scheme: bool = True
) -> Requirements:
    """The bias schemes, widths and amplitudes the run's schemes can produce.

    `extra` are further schemes the run uses (the write-verify of its initial programming);
    `with_scheme=False` leaves the envelope's own scheme out (a command that sends only the
    nominal pulses, such as `characterize`). A write-verify scheme climbs ISPP levels, never
    past the limits.
    """
    p, lim = envelope.pulses, envelope.limits
    bias: list[BiasScheme] = []
    top_set, top_reset = p.set.amplitude_v, -p.reset.amplitude_v
    top_width = max(p.set.width_s, p.reset.width_s)
    parallel = False
    bias.append("none")  # the nominal pulses alone, one device at a time
    for scheme in ((envelope.scheme,) if with_scheme else ()) + tuple(extra):
        b = scheme_bias(scheme)
        if b not in bias:
            bias.append(b)
        parallel |= isinstance(scheme, OuterProductScheme)
        if isinstance(scheme, WriteVerifyScheme):
            s, r, w = ispp_top(p, scheme)
            top_set = max(top_set, min(s, lim.max_set_v))
            top_reset = max(top_reset, min(r, lim.max_reset_v))
            top_width = max(top_width, min(w, lim.max_width_s))
    return Requirements(
        bias=tuple(bias),
        parallel=parallel,
        min_width_s=min(p.set.width_s, p.reset.width_s),
        max_width_s=top_width,
        max_set_v=top_set,
        max_reset_v=top_reset,
    )


def incompatibilities(need: Requirements, info: BackendInfo) -> list[str]:
    """Every way `info` falls short of `need`, each with what would work."""
    name = f"backend {info.kind} ({info.name})"
    out: list[str] = []
    for bias in need.bias:
        if bias not in info.bias_schemes:
            can = ", ".join(info.bias_schemes)
            out.append(
                f"the scheme biases unselected lines with {bias}, which {name} cannot do (it "
                f"can bias: {can}); use a scheme with bias {info.bias_schemes[0]} (proportional, "
                f"manhattan or write_verify), or a backend that can bias {bias}"
            )
    if need.parallel and not info.supports_row_parallel:
        out.append(
            f"the outer_product scheme fires row/column-parallel phases, which {name} cannot; "
            "use a per-device scheme (proportional, manhattan or write_verify)"
        )
    if info.min_width_s is not None and need.min_width_s < info.min_width_s:
        out.append(
            f"pulse width {need.min_width_s:g} s is below the shortest pulse {name} fires "
            f"({info.min_width_s:g} s); use a protocol whose pulses are at least "
            f"{info.min_width_s:g} s wide, or an instrument that fires shorter ones"
        )
    if info.max_width_s is not None and need.max_width_s > info.max_width_s:
        out.append(
            f"pulse width up to {need.max_width_s:g} s is above the longest pulse {name} fires "
            f"({info.max_width_s:g} s); lower the pulse width or limits.max_width_s to "
            f"{info.max_width_s:g} s"
        )
    top = max(need.max_set_v, need.max_reset_v)
    if info.max_abs_v is not None and top > info.max_abs_v:
        out.append(
            f"the run may send {top:g} V (nominal pulses and ISPP steps, within the limits), "
            f"beyond the ±{info.max_abs_v:g} V {name} can source; lower the pulses or "
            f"limits.max_set_v / max_reset_v to {info.max_abs_v:g} V"
        )
    return out


def check_compatible(
    envelope: Envelope,
    info: BackendInfo,
    extra: Sequence[Scheme] = (),
    *,
    with_scheme: bool = True,
) -> None:
    """InputError listing every incompatibility between the run's envelope and the backend."""
    problems = incompatibilities(requirements(envelope, extra, with_scheme=with_scheme), info)
    if problems:
        raise InputError("; ".join(problems) + "; nothing was sent")
