"""The fitted response file: the contract between `characterize` and the planner.

`mrnn-hil characterize` writes characterization.json; a training run names it (`response:` in
a run config, `--response` on the command line) so that a measured device, not a preset, sets
pulse counts. Reading it lives here, below both, so neither has to import the other.
"""

from __future__ import annotations

from pathlib import Path

from protocols.errors import InputError
from protocols.loading import MAX_DATA_BYTES, parse_document, read_text
from protocols.response import NeuroSimResponse

#: The `format` field of a characterization.json.
CHARACTERIZATION_FORMAT = "mrnn-hil characterization"


def load_fitted_response(path: str | Path) -> NeuroSimResponse:
    """The fitted mean response from a characterization.json (or its directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / "characterization.json"
    doc = parse_document(read_text(p, str(p), MAX_DATA_BYTES), str(p), ".json")
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
