"""MBPP (basic Python programming). Rows: {task_id, text or prompt, code, test_list[, test_setup_code]}."""

from __future__ import annotations

import re
from typing import ClassVar

from dllg.tasks.base import CODE_INSTRUCTION, Example, register, user
from dllg.tasks.hub import HubSplits, HubTask
from dllg.verify.base import Reference


def _entry_point(row: dict) -> str | None:
    found = re.search(r"^def\s+(\w+)\s*\(", row.get("code", ""), re.MULTILINE)
    return found.group(1) if found else None


class MBPP(HubTask):
    name = "mbpp"
    description = "974 short Python programming problems with assert tests"
    verifier = "code"
    splits = ("train", "val", "test", "prompt")
    training_splits = ("train", "prompt")
    default_split = "test"
    source = "hub google-research-datasets/mbpp (config full); or JSONL"
    hub_splits: ClassVar[HubSplits] = {
        "train": ("google-research-datasets/mbpp", "full", "train"),
        "val": ("google-research-datasets/mbpp", "full", "validation"),
        "test": ("google-research-datasets/mbpp", "full", "test"),
        "prompt": ("google-research-datasets/mbpp", "full", "prompt"),
    }

    def example(self, row: dict, split: str, index: int) -> Example:
        tests = "\n".join(row["test_list"])
        # The tests name the function, so the prompt shows them, as MBPP's own evaluation does.
        text = f"{(row.get('text') or row['prompt']).strip()}\nYour code should pass these tests:\n\n{tests}"
        setup = row.get("test_setup_code") or ""
        return Example(
            id=f"mbpp/{row.get('task_id', index)}",
            messages=user(f"{text}\n\n{CODE_INSTRUCTION}"),
            reference=Reference(tests=f"{setup}\n{tests}\n", entry_point=_entry_point(row)),
            verifier="code",
            metadata={"solution": row.get("code", "")},
        )


register(MBPP())
