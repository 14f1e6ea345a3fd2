"""The world's trained models shipped inside the package, named `world:NAME`.

`world:arith` and `world:code` are the experts, `world:base` the base they were fine-tuned from,
`world:gate` the trained gate, `world:router-embedllm` and `world:router-routerdc` the routers.
`scripts/build_world.py` regenerates all of them.
"""

import hashlib
from pathlib import Path

from dllg.errors import DllgError

WORLD_PREFIX = "world:"
ASSETS_DIR = Path(__file__).parent / "assets"


def is_world_name(name: str | Path) -> bool:
    return isinstance(name, str) and name.startswith(WORLD_PREFIX)


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


def local_path(name: str | Path) -> Path:
    """`world:NAME` as its folder; any other name or path unchanged."""
    return world_asset(name) if is_world_name(name) else Path(name)


def assets_fingerprint() -> str:
    """12 hex digits that change whenever any shipped weight file changes (a rebuild)."""
    digest = hashlib.sha256()
    for path in sorted(ASSETS_DIR.glob("*/*.safetensors")):
        digest.update(path.relative_to(ASSETS_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
