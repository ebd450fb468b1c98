"""Instrument backends (VISA, serial), wire dialects and loopback emulators.

Entry point: `open_backend(kind, resource_or_port, rows, cols, limits=..., dry_run=...)`.
"""

from drivers.factory import open_backend

__all__ = ["open_backend"]
