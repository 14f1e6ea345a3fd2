"""DataFrameBench (BigCodeBench problems rewritten for dataframe libraries), from the `dataframebench`
0.1.1 wheel. Its CANARY file makes train (709) the only trainable split; val (16) and test (100) are
evaluation-only, which `Task.load(..., training=True)` enforces. We use the pandas condition.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from dllg.tasks.base import Example, Task, register, user
from dllg.tasks.sources import parse_jsonl, read_jsonl, wheel, wheel_member
from dllg.verify.base import Reference

LIBRARY, IMPORT_LINE = "pandas", "import pandas as pd"
# Some reference solutions fit models or draw plots: 24 s on a busy 2-core machine, so allow 60.
LIBRARY_TIMEOUT = 60.0


@lru_cache(maxsize=3)
def _rows(split: str) -> tuple[dict, ...]:
    member = f"dataframebench/data/{split}.jsonl"
    path = wheel("dataframebench", "0.1.1", python_version="3.12")
    return tuple(parse_jsonl(wheel_member(path, member).decode("utf-8"), member))


def dataframebench_example(row: dict) -> Example:
    # The prompt carries two placeholders for the library condition; plain replace, the stubs hold braces.
    prompt = row["prompt"].replace("{library_import}", IMPORT_LINE)
    prompt = prompt.replace(
        "{library_instruction}", f"Use {LIBRARY} as the data processing library in your solution."
    )
    return Example(
        id=row["task_id"],
        messages=user(prompt),
        reference=Reference(
            tests=row["test_code"],
            test_kind="unittest",
            entry_point=row["entry_point"],
            timeout_seconds=LIBRARY_TIMEOUT,
        ),
        verifier="code",
        metadata={"solution": row["ground_truth"][LIBRARY], "libs": row["libs"], "category": row["category"]},
    )


class DataFrameBench(Task):
    name = "dataframebench"
    description = "data-processing functions with unit tests (pandas condition); only train is trainable"
    verifier = "code"
    splits = ("train", "val", "test")
    training_splits = ("train",)
    default_split = "test"
    source = "offline: dataframebench 0.1.1 wheel (data/{train,val,test}.jsonl); or a JSONL"

    def _load(self, split: str, data_path: Path | None) -> list[Example]:
        rows = read_jsonl(Path(data_path)) if data_path else _rows(split)
        return [dataframebench_example(row) for row in rows]


register(DataFrameBench())
