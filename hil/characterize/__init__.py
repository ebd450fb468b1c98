"""Protocol characterisation: run a protocol's SET/RESET trains on devices, fit, judge, plot.

May import `hil.network` and the packages below `hil`; never `hil.insitu`, `hil.commands` or
`hil.cli`. The fitted response it writes is read by training runs through
`protocols.fitted_response`, so neither side imports the other.
"""
