"""Protocol files shipped for the simulator presets (one YAML file per preset)."""
