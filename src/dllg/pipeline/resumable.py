"""The one resumable-JSONL loop that collection and evaluation share.

Work comes in groups (an expert's prompts, a method's examples on one task); a group keeps a batch's worth of
items in work (continuous batching: a finished row's place goes to the next item) and each record is
appended (fsync'd) as soon as it is done, so a kill loses at most the items in work. A rerun reads what is
there, refuses a file made with other settings (`refuse_changed`), and is handed only what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dllg.errors import DllgError
from dllg.jsonl import append_records

T = TypeVar("T")


@dataclass
class WorkGroup(Generic[T]):
    """The items of one expert, or of one method on one task: `stream(items, batch_size)` keeps up to
    `batch_size` of them in work and yields records as they are done (in lists to append at once)."""

    label: str  # shown in the progress bar
    items: list[T]
    stream: Callable[[list[T], int], Iterator[list[dict]]]


def _describe(key: str, stored: object, wanted: object) -> str:
    if isinstance(stored, dict) and isinstance(wanted, dict):
        changed = [k for k in wanted if stored.get(k) != wanted[k]]
        return ", ".join(f"{k}={stored.get(k)!r} (now {wanted[k]!r})" for k in changed)
    return f"{key} {stored!r} (now {wanted!r})"


def refuse_changed(records: Iterable[dict], expected: Mapping[str, object], path: Path, fix: str) -> None:
    """Every record must carry `expected`'s values: records made otherwise would mix into one result
    unnoticed. A record without one of the fields (written before it was recorded) passes."""
    for record in records:
        for key, wanted in expected.items():
            stored = record.get(key, wanted)
            if stored != wanted:
                raise DllgError(f"{path} holds records made with {_describe(key, stored, wanted)}: {fix}")


def append_as_done(
    path: Path,
    groups: Sequence[WorkGroup],
    batch_size: int,
    skipped: int,
    correct_field: str,
    verb: str,
    on_records: Callable[[list[dict]], None] | None = None,
) -> dict[str, int]:
    """Run every group, appending records as they are done; returns counts {"generated", "correct",
    "skipped"} for this run (`skipped`: what was there before)."""
    counts = {"generated": 0, "correct": 0, "skipped": skipped}
    total = sum(len(g.items) for g in groups)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        bar = progress.add_task(f"{verb} ({skipped} done before)", total=total)
        for group in groups:
            if not group.items:
                continue
            progress.update(bar, description=f"{verb}: {group.label}")
            written = 0
            for records in group.stream(group.items, batch_size):
                append_records(path, records)
                if on_records is not None:
                    on_records(records)
                written += len(records)
                counts["generated"] += len(records)
                counts["correct"] += sum(int(r[correct_field]) for r in records)
                progress.advance(bar, len(records))
            if written != len(group.items):
                raise DllgError(f"{group.label}: {written} records for {len(group.items)} items")
    return counts
