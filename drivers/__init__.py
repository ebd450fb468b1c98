"""Instrument backends (VISA, serial), wire dialects and loopback emulators."""
