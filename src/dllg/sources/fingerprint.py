"""What identifies an expert's weights, cheaply and stably: label tables and feature caches are refused
when an expert changed since they were made, and must not be refused when it did not.

- a catalog model: the sha256 of its GGUF, which the catalog pins: the same across re-fetches, machines and
  sessions (a label table committed in one session resumes in the next);
- a folder shipped in a package (`world:NAME`): a hash of its files' contents (a few MB): the same in every
  checkout, whatever the files' times;
- a local folder or .gguf file: the name, size and modification time of each file, so that an expert
  retrained or re-converted in place is told apart without reading gigabytes;
- a model built in memory (`tiny:SEED`) or a hub id, whose files are not here: its name.
"""

import hashlib
from collections.abc import Collection
from pathlib import Path

from dllg.errors import DllgError
from dllg.sources.catalog import find_entry
from dllg.sources.resolve import resolve_source


def weights_fingerprint(source: str) -> str:
    """12 hex digits (or the name itself) that change when the source's weights do."""
    try:
        resolved = resolve_source(source)
    except DllgError:
        return source
    folder = Path(resolved.path)
    if resolved.kind in ("hub", "memory") or not folder.is_dir():
        return source
    if resolved.kind == "catalog":
        entry = find_entry(resolved.name)
        if entry is not None:
            return f"sha256:{entry.sha256[:12]}"
    files = [folder / resolved.gguf_file] if resolved.gguf_file else sorted(folder.iterdir())
    files = [f for f in files if f.is_file()]
    digest = hashlib.sha256(source.encode())
    for file in files:
        digest.update(file.name.encode())
        if resolved.kind == "packaged":
            digest.update(file.read_bytes())
        else:
            stat = file.stat()
            digest.update(f"{stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def folder_digest(folder: str | Path, skip: Collection[str] = ()) -> str:
    """12 hex digits over the names and contents of a small folder's files (a gate, a router) but those
    named in `skip`: what an evaluation record was made with, the same in every checkout."""
    digest = hashlib.sha256()
    for file in sorted(Path(folder).iterdir()):
        if file.is_file() and file.name not in skip:
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]
