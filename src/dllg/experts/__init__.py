"""Experts (model, tokenizer, device, dtype) and the pool that checks they share a vocabulary."""

from dllg.experts.expert import Expert, ExpertOutput
from dllg.experts.pool import ExpertPool

__all__ = ["Expert", "ExpertOutput", "ExpertPool"]
