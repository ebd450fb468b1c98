"""Contracts shared by every layer: pulse plans, safety limits and the crossbar backend ABC.

Pure data and validation; this package imports none of the other mrnn-hil packages.
"""

from protocols.backend import (
    BackendError,
    BackendInfo,
    BackendNotSupported,
    BackendStateError,
    CrossbarBackend,
)
from protocols.errors import InputError
from protocols.limits import LimitViolation, SafetyLimits, check_plan
from protocols.plan import PulseGroup, PulsePlan, PulseShape

__all__ = [
    "BackendError",
    "BackendInfo",
    "BackendNotSupported",
    "BackendStateError",
    "CrossbarBackend",
    "InputError",
    "LimitViolation",
    "PulseGroup",
    "PulsePlan",
    "PulseShape",
    "SafetyLimits",
    "check_plan",
]
