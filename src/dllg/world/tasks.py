"""The world's families as tasks `world-arith`, `world-code`, `world-mixed`: `train` trains, `test` evaluates.

Importing this module registers the three tasks.
"""

from __future__ import annotations

from pathlib import Path

from dllg.tasks.base import Example, Task, register, user
from dllg.world.families import FAMILIES, Problem, split_problems

TRAIN_SIZE = 2000
TEST_SIZE = 100
_DESCRIPTIONS = {
    "arith": "synthetic world: one or two operations on one-digit numbers, step by step, boxed answer",
    "code": "synthetic world: a one-line Python function f(x) from its formula",
    "mixed": "synthetic world: compute k step by step, then a Python function f(x) that uses k",
}


def world_example(task_name: str, split: str, index: int, item: Problem) -> Example:
    return Example(
        id=f"{task_name}/{split}-{index}",
        messages=user(item.prompt),
        reference=item.reference,
        verifier=item.verifier,
        metadata={"solution": item.solution, "family": item.family, "tags": list(item.tags)},
    )


class WorldTask(Task):
    """One family of the world; the split sizes are set per instance (the registered ones use defaults)."""

    splits = ("train", "test")
    training_splits = ("train",)
    default_split = "test"
    source = "generated: dllg.world.families (seeded, no data files)"

    def __init__(self, family: str, train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE) -> None:
        self.family = family
        self.name = f"world-{family}"
        self.description = _DESCRIPTIONS[family]
        self.verifier = "math" if family == "arith" else "code"
        self.sizes = {"train": train_size, "test": test_size}

    def _load(self, split: str, data_path: Path | None) -> list[Example]:
        items = split_problems(self.family, split, self.sizes[split], self.sizes["test"])
        return [world_example(self.name, split, i, item) for i, item in enumerate(items)]


WORLD_TASKS = {family: register(WorldTask(family)) for family in FAMILIES}
