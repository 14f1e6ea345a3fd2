"""Judge responses to a task's examples, each by its own verifier, code checks running in parallel."""

from __future__ import annotations

from collections.abc import Sequence

from dllg.tasks.base import Example
from dllg.verify import Verdict, get_verifier

# The finish reasons of a generation (see dllg.decode.stopping); "length" means max_new_tokens cut it off.
FINISH_REASONS = ("eos", "stop", "length")
TRUNCATED = "length"


def require_verifiers(examples: Sequence[Example]) -> None:
    """Check up front that every verifier these examples need can run here (the code sandbox needs
    bubblewrap): a missing tool is one clear error before any answer is generated, not after."""
    for name in sorted({e.verifier for e in examples}):
        get_verifier(name).ready()


def verify_responses(
    examples: Sequence[Example],
    responses: Sequence[str],
    max_workers: int = 2,
    finishes: Sequence[str | None] | None = None,
) -> list[Verdict]:
    """One verdict per (example, response) pair, in input order.

    finishes: each response's finish reason ("eos", "stop", "length"; None: unknown, taken as complete).
    A "length" response was cut off by max_new_tokens: final-answer verifiers then accept only an answer
    it stated (\\boxed{}, ####, "the answer is"), not its last number; the code verifier ignores it.
    """
    if len(examples) != len(responses):
        raise ValueError(f"{len(examples)} examples but {len(responses)} responses")
    if finishes is not None and len(finishes) != len(responses):
        raise ValueError(f"{len(responses)} responses but {len(finishes)} finish reasons")
    truncated = [f == TRUNCATED for f in finishes] if finishes is not None else None
    by_verifier: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_verifier.setdefault(example.verifier, []).append(i)
    verdicts: list[Verdict | None] = [None] * len(examples)
    for name, indices in by_verifier.items():
        items = [(responses[i], examples[i].reference) for i in indices]
        flags = [truncated[i] for i in indices] if truncated is not None else None
        judged = get_verifier(name).verify_many(items, max_workers, truncated=flags)
        for i, verdict in zip(indices, judged, strict=True):
            verdicts[i] = verdict
    return [v for v in verdicts if v is not None]
