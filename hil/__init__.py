"""mrnn-hil controller: network dynamics, the Pineda–Almeida rule, training loops, runs, CLI."""

__version__ = "0.1.0"
