"""A task whose splits come from a Hugging Face dataset or a local JSONL (see `sources.records`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from dllg.tasks.base import Example, Task
from dllg.tasks.sources import records

# our split -> (dataset id, config, the dataset's own split name)
HubSplits = dict[str, tuple[str, str | None, str]]


class HubTask(Task):
    """Subclasses set `hub_splits` (our split -> (dataset id, config, the dataset's split name)) and
    `example(row, split, index)`; a task with several configs (BBH) overrides `rows`."""

    hub_splits: ClassVar[HubSplits] = {}

    def rows(self, split: str, data_path: Path | None) -> list[dict]:
        hf_id, config, hf_split = self.hub_splits[split]
        return records(self.name, split, hf_id, config, hf_split, data_path)

    def example(self, row: dict, split: str, index: int) -> Example:
        raise NotImplementedError

    def _load(self, split: str, data_path: Path | None) -> list[Example]:
        return [self.example(row, split, i) for i, row in enumerate(self.rows(split, data_path))]
