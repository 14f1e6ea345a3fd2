"""BigCodeBench (1,140 library-heavy function tasks, unittest tests). Rows: {task_id, instruct_prompt,
code_prompt, canonical_solution, test, entry_point, libs}. Its tests need many libraries installed."""

from __future__ import annotations

from typing import ClassVar

from dllg.tasks.base import Example, register, user
from dllg.tasks.hub import HubSplits, HubTask
from dllg.verify.base import Reference


class BigCodeBench(HubTask):
    name = "bigcodebench"
    description = "practical library-using Python functions with unittest suites (evaluation only)"
    verifier = "code"
    splits = ("test",)
    default_split = "test"
    source = "hub bigcode/bigcodebench (split v0.1.4); or JSONL"
    hub_splits: ClassVar[HubSplits] = {"test": ("bigcode/bigcodebench", None, "v0.1.4")}

    def example(self, row: dict, split: str, index: int) -> Example:
        return Example(
            id=row["task_id"],
            messages=user(row["instruct_prompt"].strip()),
            reference=Reference(
                tests=row["test"],
                test_kind="unittest",
                entry_point=row["entry_point"],
                prompt_code=row.get("code_prompt"),
                timeout_seconds=60.0,  # library-heavy tests (sklearn, matplotlib) need more than the default
            ),
            verifier="code",
            metadata={
                "solution": row.get("code_prompt", "") + row.get("canonical_solution", ""),
                "libs": row.get("libs"),
            },
        )


register(BigCodeBench())
