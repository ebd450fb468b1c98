"""Shared test configuration: the Hypothesis profiles.

`ci` (the default): derandomized, so every run draws the same examples and a planted bug
the examples catch is caught on every run; no example database, no deadline (the machine
is often loaded). `explore` (`HYPOTHESIS_PROFILE=explore`): random draws and ten times the
examples (`property_support.examples`), to look for new counterexamples by hand.
`shuffle`: the CI sizes with random draws, to check that a property's minimum shares
hold with other draws than the fixed ones (the fixed draws also shift with the modules a
run has imported, whose constants Hypothesis mixes into its draws).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from property_support import MEASURED

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    derandomize=False,
    deadline=None,
    max_examples=1000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("shuffle", settings.get_profile("ci"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header() -> str:
    return f"hypothesis profile: {settings.get_current_profile_name()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("share of property examples that reached the check")
        for name, share in sorted(MEASURED.items()):
            terminalreporter.write_line(f"{name}: {share}")
