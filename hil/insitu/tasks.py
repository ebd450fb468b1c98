"""Named training tasks: one option that sets the patterns and the mapping a run needs.

`mrnn-hil train --task glyphs32` trains the 32-unit network (eight 4 x 8 digits) with each
symmetric weight stored once, so that it fits a 32 x 32 board (ArC ONE, ArC TWO): the run
config gets the values below; a config file (`--config`) and the other options override them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocols.errors import InputError


@dataclass(frozen=True)
class Task:
    """A named bundle of run-config values."""

    description: str
    config: dict[str, Any] = field(default_factory=dict)


TASKS: dict[str, Task] = {
    "glyphs32": Task(
        "8 digits on a 4 x 8 grid, N = 32 units, one pair per unordered pair of units and no "
        "diagonal: 32 x 31 = 992 devices, fits a 32 x 32 board",
        {
            "training": {"patterns": "builtin:glyphs32"},
            "mapping": {"layout": "symmetric", "diagonal": False, "w_max": 1.0},
        },
    ),
}


def task_config(name: str) -> dict[str, Any]:
    """The run-config values of a task (a fresh copy), or an error naming the known tasks."""
    import copy

    try:
        return copy.deepcopy(TASKS[name].config)
    except KeyError:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
