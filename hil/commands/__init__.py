"""One module per `mrnn-hil` sub-command; each defines `add_parser(subparsers)` and `run(args)`.

Argument parsing and printing only: the work is done in `hil.network`, `hil.insitu` and
`hil.characterize`, which never import this package.
"""
