"""The one decode loop and its pieces (sampling, stopping)."""

from dllg.decode.config import GenerationConfig
from dllg.decode.generate import generate, generate_stream
from dllg.decode.loop import Generation

__all__ = ["Generation", "GenerationConfig", "generate", "generate_stream"]
