"""GSM-Symbolic training variants: the committed JSONL made by scripts/make_gsm_symbolic_train.py.

Only variants of the 50 training templates exist here, so nothing in this task can leak evaluation
questions; `--split train` is its only split.
"""

from __future__ import annotations

from pathlib import Path

from dllg.errors import DllgError
from dllg.tasks.base import Task, register
from dllg.tasks.gsm8k import gsm_example
from dllg.tasks.gsm_templates import EVAL_TEMPLATES
from dllg.tasks.sources import read_jsonl

DATA_FILE = Path(__file__).with_name("data") / "gsm_symbolic_train.jsonl"


class GSMSymbolic(Task):
    name = "gsm_symbolic"
    description = "GSM8K training templates with new numbers (committed, seeded variants)"
    verifier = "math"
    splits = ("train",)
    training_splits = ("train",)
    default_split = "train"
    source = "src/dllg/tasks/data/gsm_symbolic_train.jsonl (scripts/make_gsm_symbolic_train.py)"

    def _load(self, split, data_path: Path | None):
        rows = read_jsonl(Path(data_path) if data_path else DATA_FILE)
        leaked = sorted({r["template"] for r in rows} & set(EVAL_TEMPLATES))
        if leaked:
            raise DllgError(
                f"{DATA_FILE.name} holds evaluation templates {leaked}: regenerate it with the script"
            )
        return [
            gsm_example(row["id"], row["question"], row["solution"], template=row["template"]) for row in rows
        ]


register(GSMSymbolic())
