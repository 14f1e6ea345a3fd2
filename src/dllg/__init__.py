"""dllg: combine several LLMs that share a tokenizer into one generator (Dynamic Logit-Level Gating)."""

__version__ = "0.1.0"

from dllg.decode import Generation, GenerationConfig
from dllg.ensemble import Ensemble
from dllg.errors import DllgError

__all__ = ["DllgError", "Ensemble", "Generation", "GenerationConfig"]
