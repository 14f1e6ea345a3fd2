"""Judge responses to a task's examples, each by its own verifier, code checks running in parallel."""

from __future__ import annotations

from collections.abc import Sequence

from dllg.tasks.base import Example
from dllg.verify import Verdict, get_verifier


def verify_responses(
    examples: Sequence[Example], responses: Sequence[str], max_workers: int = 2
) -> list[Verdict]:
    """One verdict per (example, response) pair, in input order."""
    if len(examples) != len(responses):
        raise ValueError(f"{len(examples)} examples but {len(responses)} responses")
    by_verifier: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_verifier.setdefault(example.verifier, []).append(i)
    verdicts: list[Verdict | None] = [None] * len(examples)
    for name, indices in by_verifier.items():
        items = [(responses[i], examples[i].reference) for i in indices]
        for i, verdict in zip(indices, get_verifier(name).verify_many(items, max_workers), strict=True):
            verdicts[i] = verdict
    return [v for v in verdicts if v is not None]
