"""Deterministic crash points: a test-only hook that SIGKILLs the process at a named moment.

The resume logic must hold wherever a process dies, but a kill from outside lands where
the process happens to be (between plans, almost always). The code that sends pulses and
writes a run's state therefore names the moments that matter with `crash_point(name)`:

| name | where |
|---|---|
| `plan.intent` | a plan's intent is journaled (committed); nothing of it sent yet |
| `plan.group` | between two groups of a plan (pulse board: two batches) |
| `plan.applied` | the backend delivered the whole plan; the journal does not say so yet |
| `checkpoint.write` | half of a checkpoint file is written to its temporary name |

With the environment variable `MRNN_HIL_CRASH_AT` unset (every normal run) the hook does
nothing. `MRNN_HIL_CRASH_AT=NAME` kills the process with SIGKILL at the first time it reaches
NAME, `NAME:N` at the N-th time (counted from 1 in this process). SIGKILL runs no handler,
no `finally` and no `atexit`, exactly like a crash or a power cut of the host. The variable
is read once, when this module is first imported.
"""

from __future__ import annotations

import os
import signal

ENV = "MRNN_HIL_CRASH_AT"

POINTS = ("plan.intent", "plan.group", "plan.applied", "checkpoint.write")


def _parse(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    name, _, nth = text.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={text!r}: unknown crash point (known: {', '.join(POINTS)})")
    try:
        n = int(nth) if nth else 1
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: the count after ':' must be an integer") from None
    if n < 1:
        raise ValueError(f"{ENV}={text!r}: the count after ':' must be at least 1")
    return name, n


_ARMED = _parse(os.environ.get(ENV))
_hits = 0


def crash_point(name: str) -> None:
    """SIGKILL this process if `MRNN_HIL_CRASH_AT` names this point (and its hit count)."""
    global _hits
    if _ARMED is None or name != _ARMED[0]:
        return
    _hits += 1
    if _hits == _ARMED[1]:
        os.kill(os.getpid(), signal.SIGKILL)
