"""dllg: combine several LLMs that share a tokenizer into one generator (Dynamic Logit-Level Gating)."""

from typing import TYPE_CHECKING, Any

from dllg.errors import DllgError

__version__ = "0.1.0"
__all__ = ["DllgError", "Ensemble", "Generation", "GenerationConfig"]

if TYPE_CHECKING:
    from dllg.decode import Generation, GenerationConfig
    from dllg.ensemble import Ensemble

# torch and transformers take seconds to import: load them only when the API is first touched,
# so that light commands (`dllg models list`) start fast.
_LAZY = {"Ensemble": "dllg.ensemble", "Generation": "dllg.decode", "GenerationConfig": "dllg.decode"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dllg' has no attribute {name!r}")
