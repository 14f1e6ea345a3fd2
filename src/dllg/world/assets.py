"""The world's trained models shipped inside the package, named `world:NAME`.

`world:arith` and `world:code` are the experts, `world:base` the base they were fine-tuned from,
`world:gate` the trained gate, `world:router-embedllm` and `world:router-routerdc` the routers.
`scripts/build_world.py` regenerates all of them. Importing this module registers the name scheme
`world:`, so every place that takes a model, gate or router folder takes these names.
"""

import hashlib
from pathlib import Path

from dllg.errors import DllgError
from dllg.sources import ModelSource, NameScheme, register_scheme

WORLD_PREFIX = "world:"
ASSETS_DIR = Path(__file__).parent / "assets"


def world_asset(name: str) -> Path:
    """The folder of a shipped asset; a clear error when the name is unknown or the files are missing."""
    asset = name.removeprefix(WORLD_PREFIX)
    folder = ASSETS_DIR / asset
    if not asset or "/" in asset or asset.startswith(".") or not folder.is_dir():
        known = ", ".join(sorted(WORLD_PREFIX + p.name for p in ASSETS_DIR.iterdir() if p.is_dir())) or "none"
        raise DllgError(
            f"no shipped world asset {name!r} (shipped: {known}); regenerate them with "
            "`python scripts/build_world.py`"
        )
    return folder


def assets_fingerprint() -> str:
    """12 hex digits that change whenever any shipped weight file changes (a rebuild)."""
    digest = hashlib.sha256()
    for path in sorted(ASSETS_DIR.glob("*/*.safetensors")):
        digest.update(path.relative_to(ASSETS_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


register_scheme(
    NameScheme(
        WORLD_PREFIX,
        "world:NAME, the synthetic world's models, gate and routers shipped inside dllg",
        lambda name: ModelSource("packaged", str(world_asset(name)), None, name),
    )
)
