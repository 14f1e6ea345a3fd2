"""`--shard i/n`: split `dllg collect` / `dllg eval` over independent processes or machines, then merge.

Each example goes to one shard by a hash of (task, split, example id), so every expert's label and every
method's answer to that example land in the same shard, on every machine and run, whatever the order or
the other examples. A shard writes the usual resumable JSONL beside the requested file
(`labels.jsonl` -> `labels.shard-1-of-4.jsonl`), so a killed shard rerun with the same command redoes only
what it had not written. `merge_shards` appends to the requested file every shard record whose key it does
not hold yet, a chunk at a time (fsync'd): a kill during a merge loses nothing and a rerun completes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from dllg.errors import DllgError
from dllg.jsonl import append_records, read_records
from dllg.pipeline.resumable import refuse_changed

if TYPE_CHECKING:  # evaluate.py pulls in torch; a merge needs none of it
    from dllg.pipeline.evaluate import EvalTask

SHARD_FORM = "write INDEX/COUNT with 0 <= INDEX < COUNT (four shards: 0/4, 1/4, 2/4, 3/4)"
MERGE_CHUNK = 256  # records per fsync'd append while merging


@dataclass(frozen=True)
class Shard:
    """Shard `index` (0-based) of `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise DllgError(f"--shard {text}: {SHARD_FORM}")
        index, count = int(match[1]), int(match[2])
        if count < 1:
            raise DllgError(f"--shard {text}: the count must be at least 1; {SHARD_FORM}")
        if index >= count:
            raise DllgError(
                f"--shard {text}: the index counts from 0, so it must be below {count}; {SHARD_FORM}"
            )
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, task: str, split: str, example_id: str) -> bool:
        return shard_of(task, split, example_id, self.count) == self.index

    def path(self, out: str | Path) -> Path:
        """This shard's file, beside `out`."""
        out = Path(out)
        return out.with_name(f"{out.stem}.shard-{self.index}-of-{self.count}{out.suffix}")


def shard_of(task: str, split: str, example_id: str, count: int) -> int:
    """A stable shard for an example. Salted, so it is independent of the train/validation split
    (`holdout.is_validation`), which hashes the same ids."""
    digest = hashlib.sha256(f"dllg-shard\0{task}\0{split}\0{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def shard_eval_tasks(shard: Shard, tasks: Iterable[EvalTask]) -> list[EvalTask]:
    """Each task with only the examples of `shard` (a task may keep none)."""
    return [replace(t, examples=[e for e in t.examples if shard.holds(t.name, t.split, e.id)]) for t in tasks]


def shard_files(out: str | Path) -> dict[Shard, Path]:
    """The shard files beside `out`, by shard (files set aside by --fresh are not among them)."""
    out = Path(out)
    pattern = re.compile(re.escape(out.stem) + r"\.shard-(\d+)-of-(\d+)" + re.escape(out.suffix))
    found = {}
    for path in sorted(out.parent.glob(f"{out.stem}.shard-*")):
        match = pattern.fullmatch(path.name)
        if match and path.is_file():
            found[Shard(int(match[1]), int(match[2]))] = path
    return dict(sorted(found.items(), key=lambda item: item[0].index))


# --- what a record is, per command -------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Records of one group (same values of `group_by`; all records when empty) must agree on `fields`."""

    group_by: tuple[str, ...]
    fields: tuple[str, ...]


@dataclass(frozen=True)
class RecordKind:
    """One command's records: their key, and what a resumed run refuses to mix (as collect.py and
    evaluate.py check with `refuse_changed`)."""

    name: str
    key_fields: tuple[str, ...]
    agreements: tuple[Agreement, ...]

    def key(self, record: dict) -> tuple:
        return tuple(record.get(f) for f in self.key_fields)


LABELS = RecordKind(
    "collect labels",
    ("example_id", "expert"),
    (Agreement(("expert",), ("generation", "expert_weights")),),
)
EVAL_RECORDS = RecordKind(
    "eval records",
    ("method", "task", "split", "example_id"),  # evaluate.record_key
    (
        Agreement((), ("experts", "expert_weights", "generation")),
        Agreement(("method",), ("method_weights",)),
    ),
)


def kind_of(record: dict) -> RecordKind | None:
    for kind in (EVAL_RECORDS, LABELS):
        if all(f in record for f in kind.key_fields):
            return kind
    return None


MIXED_HINT = (
    "every shard must be made by the same command as the others but for --shard: set that file aside "
    "and rerun its shard"
)


class _Checker:
    """One pass over the files, in merge order: the first file that disagrees with those before it is
    named, the way a resumed run names its file."""

    def __init__(self) -> None:
        self.kind: RecordKind | None = None
        self.seen: dict[tuple, dict[str, object]] = {}

    def check(self, record: dict, path: Path) -> tuple:
        kind = kind_of(record)
        if kind is None or (self.kind is not None and kind is not self.kind):
            what = kind.name if kind else "records of neither dllg collect nor dllg eval"
            expected = f"{self.kind.name} like the files before it" if self.kind else "their records"
            raise DllgError(f"{path} holds {what}, not {expected}: merge the shards of one command")
        self.kind = kind
        for agreement in kind.agreements:
            group = (agreement, tuple(record.get(f) for f in agreement.group_by))
            wanted = self.seen.setdefault(group, {})
            refuse_changed([record], wanted, path, MIXED_HINT)
            for name in agreement.fields:
                if name in record:
                    wanted.setdefault(name, record[name])
        return kind.key(record)


@dataclass
class MergeReport:
    out: Path
    shards: list[Shard]  # the shard files merged
    absent: list[Shard]  # shards of the same count without a file yet
    merged: int = 0  # records appended to `out` now
    already_present: int = 0  # shard records whose key `out` held already
    missing: list[tuple] | None = None  # expected keys in no file; None when none were expected
    total: int = 0  # keys in `out` after the merge
    kind: str | None = None
    per_shard: dict[Shard, int] = field(default_factory=dict)  # records appended from each


def merge_shards(out: str | Path, expected: Collection[tuple] | None = None) -> MergeReport:
    """Append to `out` every record of its shard files whose key it does not hold yet.

    Everything is checked before anything is written: shard files of several counts, or made with other
    settings, experts or gates than each other and `out`, are refused. `expected` (keys as
    `RecordKind.key` makes them) adds the list of those still missing to the report."""
    out = Path(out)
    files = shard_files(out)
    if not files:
        raise DllgError(
            f"no shard files beside {out} (such as {Shard(0, 2).path(out).name}): "
            "run the command with --shard INDEX/COUNT and the same output first"
        )
    counts = sorted({s.count for s in files})
    if len(counts) > 1:
        raise DllgError(
            f"shard files of {' and '.join(map(str, counts))} shards beside {out}: "
            "merge one set; set the others aside"
        )
    checker = _Checker()
    present = {checker.check(r, out) for r in read_records(out)}
    for path in files.values():
        for record in read_records(path):
            checker.check(record, path)

    kind = checker.kind
    count = counts[0]
    report = MergeReport(out, list(files), [s for i in range(count) if (s := Shard(i, count)) not in files])
    report.kind = kind.name if kind else None

    def new_records(path: Path) -> Iterator[dict]:
        for record in read_records(path):
            key = kind.key(record)  # type: ignore[union-attr] - a file with records set the kind
            if key in present:
                report.already_present += 1
            else:
                present.add(key)  # a key twice in the shard files is merged once
                yield record

    for shard, path in files.items():
        report.per_shard[shard] = 0
        records = new_records(path)
        while chunk := list(islice(records, MERGE_CHUNK)):
            append_records(out, chunk)
            report.per_shard[shard] += len(chunk)
    report.merged = sum(report.per_shard.values())
    report.total = len(present)
    if expected is not None:
        report.missing = [k for k in expected if k not in present]
    return report
