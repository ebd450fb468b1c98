"""Simulated memristor crossbar with device nonidealities (the embedded default backend)."""
