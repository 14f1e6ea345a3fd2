"""dllg: combine several LLMs that share a tokenizer into one generator (Dynamic Logit-Level Gating)."""

__version__ = "0.1.0"
