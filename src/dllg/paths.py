"""Where dllg keeps large files (downloads, converted models): outside the repository."""

import os
from pathlib import Path

CACHE_ENV_VAR = "DLLG_CACHE"


def cache_dir() -> Path:
    """The cache root: $DLLG_CACHE if set, else ~/.cache/dllg."""
    root = os.environ.get(CACHE_ENV_VAR)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "dllg"
