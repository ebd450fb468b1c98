"""One way out on every stop request, and a shutdown that a second request cannot cut short.

The command line routes SIGINT, SIGTERM and SIGHUP here (`stop_requested`): the first one
becomes an exception in the main thread, `KeyboardInterrupt` for SIGINT and its subclass
`Terminated` for the others, so every `finally` and context manager runs exactly as after
Ctrl-C and each backend's `close` puts its instrument into its safe state. Every later
signal is only acknowledged: the shutdown under way is not interrupted.

While a backend closes, signals are held (`held`): one arriving inside is raised when the
outermost held block ends, so even the first signal cannot stop a close half-way (output
left on, a relay left closed). Only the main thread is concerned: Python runs signal
handlers there and nowhere else.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by SIGTERM or SIGHUP (Ctrl-C raises KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(signum).name)


_depth = 0
_pending: KeyboardInterrupt | None = None
_stopping = False


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def stopping() -> bool:
    """True once a stop was requested (until `reset`)."""
    return _stopping


def exit_code(exc: KeyboardInterrupt) -> int:
    """What a shell reports for the signal: 128 + its number (130 for Ctrl-C)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else int(signal.SIGINT))


def stop_requested(signum: int, _frame: object = None) -> None:
    """Signal handler: raise the first stop request (or hold it), acknowledge the others."""
    global _stopping, _pending
    if _stopping:
        name = signal.Signals(signum).name
        os.write(
            2, f"mrnn-hil: {name} received: still shutting down safely; please wait\n".encode()
        )
        return
    _stopping = True
    exc = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)
    if _depth > 0 and _main_thread():
        _pending = exc
        return
    raise exc


@contextmanager
def held() -> Iterator[None]:
    """Run a block (a backend's close) that no signal may interrupt; a stop request that
    arrives inside is raised when the outermost held block ends."""
    global _depth, _pending
    if not _main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            exc, _pending = _pending, None
            raise exc


def reset() -> None:
    """Forget a stop request (the command that received it has ended)."""
    global _stopping, _pending
    _stopping = False
    _pending = None


@contextmanager
def handling(signals: tuple[int, ...] | None = None) -> Iterator[None]:
    """Route SIGINT, SIGTERM and SIGHUP to `stop_requested` for the duration of a command
    (main thread only), then restore the previous handlers."""
    wanted = signals if signals is not None else _default_signals()
    previous: dict[int, object] = {}
    if _main_thread():
        for signum in wanted:
            try:
                previous[signum] = signal.signal(signum, stop_requested)
            except (OSError, ValueError):  # not settable here (embedded interpreter)
                continue
    try:
        yield
    finally:
        # After a stop request the process is on its way out: later signals are ignored
        # (SIG_IGN survives the interpreter's own shutdown), so none can kill it in its
        # last steps and change its exit code.
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_IGN if _stopping else handler)  # type: ignore[arg-type]
        reset()


def _default_signals() -> tuple[int, ...]:
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return tuple(int(getattr(signal, n)) for n in names if hasattr(signal, n))
