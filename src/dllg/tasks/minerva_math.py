"""MinervaMath (272 undergraduate science and engineering problems). Rows: {question, answer}."""

from __future__ import annotations

from typing import ClassVar

from dllg.tasks.base import MATH_INSTRUCTION, Example, register, user
from dllg.tasks.hub import HubSplits, HubTask
from dllg.verify.base import Reference


class MinervaMath(HubTask):
    name = "minerva_math"
    description = "undergraduate STEM problems with numeric / symbolic answers (evaluation only)"
    verifier = "math"
    splits = ("test",)
    default_split = "test"
    source = "hub math-ai/minervamath; or JSONL"
    hub_splits: ClassVar[HubSplits] = {"test": ("math-ai/minervamath", None, "test")}

    def example(self, row: dict, split: str, index: int) -> Example:
        return Example(
            id=f"minerva_math/{index}",
            messages=user(f"{row['question'].strip()}\n\n{MATH_INSTRUCTION}"),
            reference=Reference(answer=str(row["answer"])),
            verifier="math",
        )


register(MinervaMath())
