"""Design-space sweeps: many simulated in-situ runs of `hil.insitu`, run as cells on Dask.

A sweep file holds a base run config and the field paths to vary (a grid and/or a list of
cells); each cell is a full simulated training run with its own run directory. May import
`hil.insitu`, `hil.network` and the packages below `hil`; never `hil.characterize`,
`hil.commands` or `hil.cli`, and nothing below it imports this package.
"""
