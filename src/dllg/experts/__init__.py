"""Experts (one interface, one module per backend) and the pool that checks they share a vocabulary."""

from dllg.experts.expert import Expert, ExpertOutput
from dllg.experts.hf import HFExpert
from dllg.experts.pool import ExpertPool

__all__ = ["Expert", "ExpertOutput", "ExpertPool", "HFExpert"]
