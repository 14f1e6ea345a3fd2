"""The one decode loop and its pieces (sampling, stopping)."""

from dllg.decode.config import GenerationConfig
from dllg.decode.loop import Generation, generate, generate_stream

__all__ = ["Generation", "GenerationConfig", "generate", "generate_stream"]
