"""DataFrameBench: splits as published, and a sample of train reference solutions pass in the sandbox."""

from __future__ import annotations

import random

import pytest

from dllg.tasks import get_task
from dllg.tasks.scoring import verify_responses

pytest.importorskip("pandas", reason="DataFrameBench's tests need pandas and its test libraries")


def test_split_sizes_and_prompts():
    task = get_task("dataframebench")
    sizes = {split: len(task.load(split)) for split in ("val", "test")}
    train = task.load("train", training=True)
    assert sizes == {"val": 16, "test": 100} and len(train) == 709
    assert all("{library_import}" not in e.prompt and "import pandas as pd" in e.prompt for e in train[:20])


def test_sample_of_train_reference_solutions_pass():
    train = get_task("dataframebench").load("train", training=True)
    sample = random.Random(0).sample(train, 10)
    verdicts = verify_responses(sample, [e.metadata["solution"] for e in sample], max_workers=2)
    assert [(e.id, v.reason) for e, v in zip(sample, verdicts, strict=True) if not v.passed] == []
