"""What identifies an expert's weights on disk, cheaply: the name and size and time of each file."""

import hashlib
from pathlib import Path

from dllg.errors import DllgError
from dllg.sources.resolve import resolve_source


def weights_fingerprint(source: str) -> str:
    """12 hex digits that change when a local source's files are rewritten (retrained, re-converted,
    re-merged). A model built in memory (`tiny:SEED`) is its own fingerprint; a hub id, whose files are
    not here, its name."""
    try:
        resolved = resolve_source(source)
    except DllgError:
        return source
    folder = Path(resolved.path)
    if resolved.kind in ("hub", "memory") or not folder.is_dir():
        return source
    files = [folder / resolved.gguf_file] if resolved.gguf_file else sorted(folder.iterdir())
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return hashlib.sha256(f"{source} {stats}".encode()).hexdigest()[:12]
