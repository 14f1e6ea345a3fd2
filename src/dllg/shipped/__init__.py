"""Gates this project trained for real experts, shipped in the package, each as a preset (a `dllg.plugins`
entry point): `dllg generate --preset NAME` after `dllg models fetch` of its experts.

Each folder here is one preset, named as the folder: a gate checkpoint (`gate.json`, `gate.safetensors`:
only what the gate adds; an aux-LM gate's backbone is loaded from the fetched expert) and `preset.json`
with its `description`, `experts` (in the gate's order), the catalog models to `fetch` first and, optionally,
the `options` of rule dllg chosen on validation (e.g. {"power": 4}).
"""

import json
from pathlib import Path

from dllg.errors import DllgError
from dllg.presets import Preset, register_preset

PRESET_FILE = "preset.json"


def read_presets(root: Path) -> list[Preset]:
    """The presets of `root`'s folders that hold a preset.json, by name."""
    presets = []
    for folder in sorted(p for p in root.iterdir() if (p / PRESET_FILE).is_file()):
        try:
            meta = json.loads((folder / PRESET_FILE).read_text())
            presets.append(
                Preset(
                    name=folder.name,
                    description=meta["description"],
                    experts=tuple(meta["experts"]),
                    gate=str(folder),
                    fetch=tuple(meta.get("fetch", ())),
                    options=dict(meta.get("options", {})),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DllgError(
                f"{folder / PRESET_FILE} is corrupt ({exc!r}): it needs description, experts and fetch "
                "(options, if given, a mapping); reinstall dllg"
            ) from exc
    return presets


for _preset in read_presets(Path(__file__).parent):
    register_preset(_preset)
