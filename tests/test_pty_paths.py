"""An emulator's pty path dies with the emulator, so no one reaches another pty by it.

The kernel gives a freed `/dev/pts/N` to the next pty opened. A driver that went on
reopening the `/dev/pts` name of a stopped emulator (its reconnect loop) opened, and locked,
the pty of the next emulator, whose own driver then failed with "Could not exclusively lock
port /dev/pts/0". Emulators and scripted peers hand out a private link instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from driver_peers import PtyPeer, Script

from drivers.emu_arc1 import Arc1Core, Arc1Emulator
from drivers.emu_array import make_array
from drivers.emu_board import BoardCore
from drivers.emu_serial import SerialEmulator
from drivers.errors import LinkLost
from drivers.transport import SerialTransport


def start_serial() -> tuple[Any, str]:
    emu = SerialEmulator(BoardCore(make_array(2, 2, preset="ideal", seed=0))).start()
    return emu, emu.path


def start_arc1() -> tuple[Any, str]:
    emu = Arc1Emulator(Arc1Core(make_array(2, 2, preset="ideal", seed=0))).start()
    return emu, emu.url


def start_peer() -> tuple[Any, str]:
    peer = PtyPeer("peer", Script([]))
    return peer, peer.path


def assert_reaches_nothing(path: str, tty: str) -> None:
    """Opening `path` fails, also once the kernel has handed its old pty name `tty` to a new
    pty (taken here: ptys are opened until one gets that name)."""
    held: list[int] = []
    try:
        for _ in range(256):
            master, slave = os.openpty()
            held += [master, slave]
            if os.ttyname(slave) == tty:
                break
        with pytest.raises(LinkLost, match="cannot open serial port"):
            SerialTransport(path).close()
    finally:
        for fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.mark.parametrize("start", [start_serial, start_arc1, start_peer])
def test_a_stopped_emulators_port_path_reaches_no_other_pty(
    start: Callable[[], tuple[Any, str]],
) -> None:
    emu, path = start()
    tty = os.path.realpath(path)
    assert tty.startswith("/dev/pts/") and path != tty  # a name of its own for the pty
    emu.stop()
    assert not os.path.lexists(path)
    assert_reaches_nothing(path, tty)


def test_a_killed_emulate_commands_port_path_reaches_no_other_pty() -> None:
    """`mrnn-hil emulate serial` killed with SIGKILL cannot remove its link: the link leads
    through the process's own descriptor, so it dies with the process instead of pointing
    at the /dev/pts name the kernel hands to the next pty."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "emulate", "serial", "--rows", "2", "--cols", "2",
         "--preset", "ideal", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        tty = os.path.realpath(path)
        assert tty.startswith("/dev/pts/"), (path, tty)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert_reaches_nothing(path, tty)
