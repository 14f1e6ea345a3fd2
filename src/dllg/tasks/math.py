"""MATH (competition mathematics). Rows: {problem, solution[, answer]}; the answer defaults to the
solution's last \\boxed{}."""

from __future__ import annotations

from typing import ClassVar

from dllg.tasks.base import MATH_INSTRUCTION, Example, register, user
from dllg.tasks.hub import HubSplits, HubTask
from dllg.verify.base import Reference
from dllg.verify.math import last_boxed


class MATH(HubTask):
    name = "math"
    description = "competition mathematics, LaTeX answers"
    verifier = "math"
    splits = ("train", "test", "test500")
    training_splits = ("train",)
    default_split = "test500"
    source = (
        "hub DigitalLearningGmbH/MATH-lighteval (train, test), HuggingFaceH4/MATH-500 (test500); or JSONL"
    )
    hub_splits: ClassVar[HubSplits] = {
        "train": ("DigitalLearningGmbH/MATH-lighteval", None, "train"),
        "test": ("DigitalLearningGmbH/MATH-lighteval", None, "test"),
        "test500": ("HuggingFaceH4/MATH-500", None, "test"),
    }

    def example(self, row: dict, split: str, index: int) -> Example:
        answer = row.get("answer") or last_boxed(row.get("solution", "")) or ""
        return Example(
            id=str(row.get("unique_id") or f"math/{split}-{index}"),
            messages=user(f"{row['problem'].strip()}\n\n{MATH_INSTRUCTION}"),
            reference=Reference(answer=answer),
            verifier="math",
            metadata={k: row[k] for k in ("level", "type", "subject", "solution") if k in row},
        )


register(MATH())
