"""mrnn-hil controller: the paper's network, in-situ training, characterisation and the CLI.

Sub-packages, each importing only those listed before it (hil/README.md has the rules):

* `hil.network`: the mathematics of the paper (eqs. 18-20), baselines, patterns, reproduction.
* `hil.insitu`: training on a `CrossbarBackend`: mapping, planning, journal, runs, reports.
* `hil.characterize`: running a protocol's pulse trains on devices and fitting their response.
* `hil.commands` and `hil.cli`: argument parsing and printing only.
"""

__version__ = "0.1.0"
