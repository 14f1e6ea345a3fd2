"""Benchmark tasks: each yields examples (chat messages + the reference its verifier checks), one registry."""

from dllg.tasks.base import SPLITS, TASKS, Example, Task, all_tasks, get_task, register

__all__ = ["SPLITS", "TASKS", "Example", "Task", "all_tasks", "get_task", "register"]
