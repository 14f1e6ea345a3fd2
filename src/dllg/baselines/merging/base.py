"""The merge-method registry: each method turns expert folders and options into a mergekit config."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dllg.errors import DllgError
from dllg.registry import register_unique

# (expert folders, base folder or None, options) -> mergekit MergeConfiguration as a dict (without dtype).
PlanFn = Callable[[list[str], str | None, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class MergeMethod:
    name: str
    plan: PlanFn
    options: tuple[str, ...]  # the option names it accepts, so that a misspelt one is an error
    needs_base: bool = False


MERGES: dict[str, MergeMethod] = {}


def register_merge(
    name: str, options: tuple[str, ...], needs_base: bool = False
) -> Callable[[PlanFn], PlanFn]:
    def wrap(plan: PlanFn) -> PlanFn:
        register_unique(MERGES, name, MergeMethod(name, plan, options, needs_base), "merge method")
        return plan

    return wrap


def get_merge(name: str) -> MergeMethod:
    if name not in MERGES:
        raise DllgError(f"unknown merge method {name!r}: use one of {', '.join(sorted(MERGES))}")
    return MERGES[name]
