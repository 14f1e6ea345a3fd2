"""BIG-Bench Hard: 27 reasoning subtasks with short exact answers. Rows: {input, target[, subtask]}."""

from __future__ import annotations

from pathlib import Path

from dllg.tasks.base import Example, register, user
from dllg.tasks.hub import HubTask
from dllg.tasks.sources import local_file, read_jsonl, records
from dllg.verify.base import Reference

HF_ID = "lukaemon/bbh"
SUBTASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects", "logical_deduction_three_objects",
    "movie_recommendation", "multistep_arithmetic_two", "navigate", "object_counting",
    "penguins_in_a_table", "reasoning_about_colored_objects", "ruin_names",
    "salient_translation_error_detection", "snarks", "sports_understanding", "temporal_sequences",
    "tracking_shuffled_objects_five_objects", "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects", "web_of_lies", "word_sorting",
)  # fmt: skip
INSTRUCTION = 'Think step by step, then finish with "The answer is X." where X is your final answer.'


class BBH(HubTask):
    name = "bbh"
    description = "BIG-Bench Hard reasoning, 27 subtasks, exact-match answers (evaluation only)"
    verifier = "exact"
    splits = ("test",)
    default_split = "test"
    source = f"hub {HF_ID} (one config per subtask); or JSONL"

    def rows(self, split: str, data_path: Path | None) -> list[dict]:
        local = local_file(self.name, split, data_path)
        if local is not None:
            return read_jsonl(local)
        return [
            {**row, "subtask": subtask}
            for subtask in SUBTASKS
            for row in records(f"{self.name}/{subtask}", split, HF_ID, subtask, "test")
        ]

    def example(self, row: dict, split: str, index: int) -> Example:
        subtask = row.get("subtask", "bbh")
        return Example(
            id=f"bbh/{subtask}/{index}",
            messages=user(f"{row['input'].strip()}\n\n{INSTRUCTION}"),
            reference=Reference(answer=str(row["target"])),
            verifier="exact",
            metadata={"subtask": subtask},
        )


register(BBH())
