"""The one way every registry (rules, gates, tasks, verifiers, methods, routers, encoders, merges, model
name schemes) adds an entry: a second entry under a taken name is an error, never a silent swap."""

from collections.abc import MutableMapping
from typing import TypeVar

from dllg.errors import DllgError

T = TypeVar("T")


def register_unique(registry: MutableMapping[str, T], name: str, entry: T, kind: str) -> T:
    """Add `entry` under `name`; the same entry again (equal, or the very object) is harmless."""
    existing = registry.get(name)
    if existing is not None and existing is not entry and existing != entry:
        raise DllgError(
            f"two {kind}s are registered as {name!r} ({_describe(existing)} and {_describe(entry)}): "
            "rename one of them"
        )
    registry[name] = entry
    return entry


def _describe(entry: object) -> str:
    target = entry if hasattr(entry, "__qualname__") else type(entry)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
