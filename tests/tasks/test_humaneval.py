"""HumanEval through the real sandbox: all 164 reference solutions pass, shuffled ones almost never do."""

from __future__ import annotations

import pytest

from dllg.tasks import get_task
from dllg.tasks.scoring import verify_responses


@pytest.fixture(scope="module")
def examples():
    return get_task("humaneval").load()


def test_all_164_reference_solutions_pass(examples):
    assert len(examples) == 164
    verdicts = verify_responses(examples, [e.metadata["solution"] for e in examples], max_workers=2)
    failures = [(e.id, v.reason) for e, v in zip(examples, verdicts, strict=True) if not v.passed]
    assert failures == []


def test_solutions_shuffled_between_tasks_fail(examples):
    shifted = [examples[(i + 1) % len(examples)].metadata["solution"] for i in range(len(examples))]
    verdicts = verify_responses(examples, shifted, max_workers=2)
    assert sum(v.passed for v in verdicts) <= 3


def test_completion_style_and_fenced_responses(examples):
    first = examples[0]
    body = first.metadata["solution"][len(first.reference.prompt_code) :]
    fenced = f"Here you go:\n```python\n{first.metadata['solution']}\n```\nHope it helps."
    wrong = f"```python\ndef {first.reference.entry_point}(*args):\n    return None\n```"
    verdicts = verify_responses([first] * 4, [body, fenced, wrong, "I cannot help."])
    assert [v.status for v in verdicts] == ["pass", "pass", "fail", "error"]
