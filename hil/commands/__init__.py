"""One module per `mrnn-hil` sub-command; each defines `add_parser(subparsers)` and `run(args)`."""
