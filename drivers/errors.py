"""Link and instrument errors, split by what the caller can do about them.

A `LinkError` means the bytes did not arrive intact (timeout, lost connection, corrupted
reply): the driver may resynchronise and retry. An `InstrumentError` means the instrument
understood and refused (error queue entry, error reply): retrying the same thing is useless.
"""

from __future__ import annotations

from protocols.backend import BackendError


class LinkError(BackendError):
    """The exchange failed on the wire; the state of the instrument is unknown."""


class LinkTimeout(LinkError):
    """No complete reply arrived within the timeout."""


class LinkLost(LinkError):
    """The connection closed or the port vanished."""


class GarbledReply(LinkError):
    """A reply arrived but does not decode (bad bytes, checksum, grammar)."""


class InstrumentError(BackendError):
    """The instrument reported an error (error queue entry or error reply)."""


class IdentityError(BackendError):
    """The instrument at the address is not the one the driver speaks to."""


class RecordMismatch(InstrumentError):
    """The instrument's own record of what it applied (batch numbers, pulse counts)
    disagrees with the host's or the journal's. Retrying, or resuming the run, meets the
    same record: someone must find out why (another host or another board on the port, a
    firmware fault) before anything more is sent."""
