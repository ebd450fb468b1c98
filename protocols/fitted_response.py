"""The fitted response file: the contract between `characterize` and the planner.

`mrnn-hil characterize` writes characterization.json; a training run names it (`response:` in
a run config, `--response` on the command line) so that a measured device, not a preset, sets
pulse counts; a device preset file from `mrnn-hil devices fit` serves the same purpose. Reading
both lives here, below insitu and characterize, so neither has to import the other.
"""

from __future__ import annotations

from pathlib import Path

from protocols.errors import InputError
from protocols.loading import MAX_DATA_BYTES, parse_document, read_text
from protocols.response import NeuroSimResponse

#: The `format` field of a characterization.json.
CHARACTERIZATION_FORMAT = "mrnn-hil characterization"
#: The `format` field of a device preset file (`mrnn-hil devices fit`, sim_backend.preset_file).
PRESET_FORMAT = "mrnn-hil device preset"


def _response_of_preset(doc: dict[str, object], source: str) -> NeuroSimResponse:
    """The NeuroSim response of a preset file's `model` (written by `mrnn-hil devices fit`)."""
    model = doc.get("model")
    if not isinstance(model, dict) or model.get("kind", "neurosim") != "neurosim":
        kind = model.get("kind") if isinstance(model, dict) else None
        raise InputError(
            f"{source}: the preset's model is {kind!r}, not a NeuroSim curve; give the file "
            "as --preset instead (its mean response is then fitted)"
        )
    fields = ("g_min_s", "g_max_s", "states_ltp", "states_ltd", "nl_ltp", "nl_ltd")
    missing = [f for f in fields if f not in model]
    if missing:
        raise InputError(f"{source}: field 'model.{missing[0]}' is required but missing")
    data = {f: model[f] for f in fields}
    for key in ("states_ltp", "states_ltd"):
        value = data[key]
        if isinstance(value, int | float) and not isinstance(value, bool):
            data[key] = max(2, round(value))
    try:
        return NeuroSimResponse.model_validate(data)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise InputError(f"{source}: field 'model' is invalid: {' '.join(first[1:3])}") from None


def load_fitted_response(path: str | Path) -> NeuroSimResponse:
    """The fitted mean response from a characterization.json (or its directory), or from a
    device preset file with a NeuroSim-curve model (.yaml/.yml/.json, `mrnn-hil devices fit`)."""
    p = Path(path)
    if p.is_dir():
        p = p / "characterization.json"
    yaml_file = p.suffix.lower() in (".yaml", ".yml")
    text = read_text(p, str(p), MAX_DATA_BYTES)
    doc = parse_document(text, str(p), p.suffix.lower() if yaml_file else ".json")
    if isinstance(doc, dict) and doc.get("format") == PRESET_FORMAT:
        return _response_of_preset(doc, str(p))
    if not isinstance(doc, dict) or doc.get("format") != CHARACTERIZATION_FORMAT:
        raise InputError(
            f"{p}: not a characterization.json written by mrnn-hil characterize, nor a "
            "device preset file"
        )
    resp = doc.get("response")
    if resp is None:
        raise InputError(f"{p}: the characterisation could not fit a response model")
    try:
        return NeuroSimResponse.model_validate(resp)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise InputError(f"{p}: field 'response' is invalid: {' '.join(first[1:3])}") from None
