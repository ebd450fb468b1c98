"""Property tests that cannot pass vacuously: each counts how many of its examples reached
the check under test, and asserts a minimum share.

    def test_something() -> None:
        reach = Reach("test_something")

        @settings(max_examples=examples(150))
        @given(...)
        def check(...):
            reach.example()
            ...
            reach.hit("planned")        # the example got to the check under test

        check()
        reach.require("planned", 0.5)   # at least half of the examples did

The shares measured are kept in `MEASURED` and printed at the end of a pytest run
(tests/conftest.py).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings

#: "test: what" -> "hits/examples (share)" of every `require` in this run.
MEASURED: dict[str, str] = {}


def examples(base: int) -> int:
    """`base` examples under the CI profile (max_examples 100), proportionally more under
    a profile that asks for more (`HYPOTHESIS_PROFILE=explore`)."""
    return max(1, base * settings.default.max_examples // 100)


class Reach:
    """Counts examples and the ones that reached each named point of a property test."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.examples = 0
        self.hits: Counter[str] = Counter()
        self._seen: set[str] = set()

    def example(self) -> None:
        """A new example starts (call first thing in the test body)."""
        self.examples += 1
        self._seen = set()

    def hit(self, what: str) -> None:
        """This example reached `what` (counted once per example)."""
        if what not in self._seen:
            self._seen.add(what)
            self.hits[what] += 1

    def share(self, what: str) -> float:
        return self.hits[what] / self.examples if self.examples else 0.0

    def require(self, what: str, at_least: float) -> None:
        """Assert that at least `at_least` of the examples reached `what`."""
        share = self.share(what)
        MEASURED[f"{self.test}: {what}"] = f"{self.hits[what]}/{self.examples} ({share:.0%})"
        assert self.examples > 0, f"{self.test}: no example ran"
        assert share >= at_least, (
            f"{self.test}: only {self.hits[what]} of {self.examples} examples ({share:.0%}) "
            f"reached {what}; at least {at_least:.0%} must: {dict(self.hits)}"
        )
