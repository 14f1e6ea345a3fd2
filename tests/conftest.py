"""Fixtures shared across the test folders."""

import pytest

from dllg.tasks.scoring import verify_responses


@pytest.fixture
def kill_at_verification(monkeypatch):
    """`arm(module, batch=2)`: from then on, verifying the module's `batch`-th batch raises KeyboardInterrupt
    (a kill arriving mid-run, after the earlier batches were written); `monkeypatch.undo()` disarms it."""

    def arm(module, batch: int = 2) -> None:
        calls = []

        def dies_at_batch(examples, responses, max_workers=2, finishes=None):
            calls.append(len(examples))
            if len(calls) == batch:
                raise KeyboardInterrupt
            return verify_responses(examples, responses, max_workers, finishes)

        monkeypatch.setattr(module, "verify_responses", dies_at_batch)

    return arm
