"""Append-only JSONL: one record per line, flushed as written, so a kill loses at most the line in flight."""

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


def read_records(path: str | Path) -> Iterator[dict]:
    """Every complete record; a line torn by a kill (or otherwise unreadable) is skipped."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path) as handle:
        for line in handle:
            if not line.endswith("\n"):
                continue  # the last line was cut mid-write
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def append_records(path: str | Path, records: Iterable[dict]) -> None:
    """Append records and fsync; a torn last line is first closed off so it cannot swallow the next record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        for record in records:
            handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())
