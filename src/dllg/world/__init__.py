"""A synthetic mixed-skill world: problem families, their tasks, and one small shared tokenizer."""

from dllg.world.families import FAMILIES, Problem, problem, split_problems

__all__ = ["FAMILIES", "Problem", "problem", "split_problems"]
