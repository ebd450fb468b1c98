"""In-situ training: eq. 20 delivered to a `CrossbarBackend` as pulses.

Weights-to-conductance mapping, update planning, closed-loop programming, the trainer loop,
the SQLite journal, run directories, the run config, backend construction and the report.
May import `hil.network` and the packages below `hil` (`protocols`, `sim_backend`,
`drivers`); never `hil.characterize`, `hil.commands` or `hil.cli`.
"""
