"""Plug-ins: modules that add entries to dllg's registries (model name schemes such as `tiny:` and
`world:`, tasks, evaluation methods) when they are imported.

They are found as entry points of the group `dllg.plugins` (see pyproject.toml), so the core never names
them: a registry calls `load_plugins()` before its first lookup, and another package can add its own
plug-ins the same way.
"""

from importlib.metadata import entry_points

GROUP = "dllg.plugins"
_loaded = False


def load_plugins() -> None:
    """Import every registered plug-in module once (later calls return at once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: a plug-in that looks up a registry while it is imported must not recurse
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        entry.load()
