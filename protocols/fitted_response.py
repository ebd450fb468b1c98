"""The fitted response file: the contract between `characterize` and the planner.

`mrnn-hil characterize` writes characterization.json; a training run names it (`response:` in
a run config, `--response` on the command line) so that a measured device, not a preset, sets
pulse counts. Reading it lives here, below both, so neither has to import the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from protocols.errors import InputError
from protocols.response import NeuroSimResponse

#: The `format` field of a characterization.json.
CHARACTERIZATION_FORMAT = "mrnn-hil characterization"


def load_fitted_response(path: str | Path) -> NeuroSimResponse:
    """The fitted mean response from a characterization.json (or its directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / "characterization.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != CHARACTERIZATION_FORMAT:
        raise InputError(f"{p}: not a characterization.json written by mrnn-hil characterize")
    resp = doc.get("response")
    if resp is None:
        raise InputError(f"{p}: the characterisation could not fit a response model")
    try:
        return NeuroSimResponse.model_validate(resp)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise InputError(f"{p}: field 'response' is invalid: {' '.join(first[1:3])}") from None
