"""What every benchmark task shares: the example it yields, the split rules, and one registry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from dllg.errors import DllgError
from dllg.plugins import load_plugins
from dllg.registry import register_unique
from dllg.verify.base import Reference

# Split names used across tasks. "eval" is our held-out evaluation split where a benchmark publishes
# none of its own (GSM8K's evaluation templates); "val" and "test" keep their published meaning.
SPLITS = ("train", "val", "eval", "test")

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_INSTRUCTION = "Write your solution as one complete, self-contained Python program in a ```python block."


@dataclass(frozen=True)
class Example:
    """One prompt of a task: chat messages to send, and the reference its verifier checks against."""

    id: str
    messages: list[dict[str, str]]
    reference: Reference
    verifier: str
    metadata: dict = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        return "\n\n".join(m["content"] for m in self.messages if m["role"] == "user")


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


class Task:
    """A benchmark. Subclasses set the class attributes and implement `_load(split, data_path)`.

    `training_splits` are the only ones `load(..., training=True)` returns: evaluation data must never
    reach the gate's training set, so asking for it there is an error, not a warning.
    """

    name: str = ""
    description: str = ""
    verifier: str = ""
    splits: tuple[str, ...] = ("test",)
    training_splits: tuple[str, ...] = ()
    default_split: str = "test"
    source: str = ""  # where the data comes from, for `dllg tasks list`

    def load(
        self,
        split: str | None = None,
        *,
        training: bool = False,
        limit: int | None = None,
        data_path: Path | None = None,
    ) -> list[Example]:
        split = split or self.default_split
        if split not in self.splits:
            raise DllgError(f"task {self.name!r} has no split {split!r}: use one of {', '.join(self.splits)}")
        if training and split not in self.training_splits:
            allowed = ", ".join(self.training_splits) or "none"
            raise DllgError(
                f"split {split!r} of task {self.name!r} is evaluation-only and must not be trained on: "
                f"use a training split ({allowed})"
            )
        examples = self._load(split, data_path)
        return examples[:limit] if limit is not None else examples

    def _load(self, split: str, data_path: Path | None) -> list[Example]:
        raise NotImplementedError


# The one registry: name -> task. Each task module adds itself at import.
TASKS: dict[str, Task] = {}

_TASK_MODULES = (
    "gsm8k",
    "gsm_symbolic",
    "math",
    "minerva_math",
    "bbh",
    "humaneval",
    "mbpp",
    "code_r1",
    "bigcodebench",
    "dataframebench",
)


def register(task: Task) -> Task:
    return register_unique(TASKS, task.name, task, "task")


def all_tasks() -> dict[str, Task]:
    """The benchmarks of this package, then the tasks plug-ins add (the synthetic world's)."""
    for module in _TASK_MODULES:
        importlib.import_module(f"dllg.tasks.{module}")
    load_plugins()
    return TASKS


def get_task(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise DllgError(f"unknown task {name!r}: use one of {', '.join(sorted(tasks))}")
    return tasks[name]
