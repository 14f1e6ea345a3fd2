"""`--fresh`: start a resumable output over without losing the old one (it is renamed, never deleted)."""

import time
from pathlib import Path


def set_aside(path: str | Path) -> Path | None:
    """Rename `path` (file or folder) to `<name>.old-<timestamp>` beside it; None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.old-{stamp}")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.old-{stamp}-{number}")
    path.rename(target)
    return target
