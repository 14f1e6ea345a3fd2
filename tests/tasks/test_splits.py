"""Evaluation data must never be handed out as training data; the GSM8K split is by template."""

from __future__ import annotations

import random

import pytest

from dllg.errors import DllgError
from dllg.tasks import all_tasks, get_task
from dllg.tasks.gsm_symbolic import DATA_FILE
from dllg.tasks.gsm_templates import EVAL_TEMPLATES, SPLIT_SEED, TRAIN_TEMPLATES
from dllg.tasks.sources import read_jsonl
from dllg.verify import Reference, get_verifier


def test_registry_holds_every_benchmark():
    expected = {"gsm8k", "gsm_symbolic", "math", "minerva_math", "bbh", "humaneval", "mbpp", "code_r1"}
    assert expected | {"bigcodebench", "dataframebench"} <= set(all_tasks())
    for task in all_tasks().values():
        assert set(task.training_splits) <= set(task.splits) and task.default_split in task.splits


@pytest.mark.parametrize(
    ("task", "split"),
    [
        ("dataframebench", "test"),
        ("dataframebench", "val"),
        ("gsm8k", "eval"),
        ("gsm8k", "full_test"),
        ("humaneval", "test"),
        ("mbpp", "test"),
        ("math", "test500"),
        ("bbh", "test"),
        ("bigcodebench", "test"),
        ("minerva_math", "test"),
    ],
)
def test_evaluation_splits_refuse_training(task, split):
    # Refused before any data is read: no download, no hub.
    with pytest.raises(DllgError, match="evaluation-only"):
        get_task(task).load(split, training=True)


def test_unknown_task_and_split_are_user_errors():
    with pytest.raises(DllgError, match="unknown task"):
        get_task("nope")
    with pytest.raises(DllgError, match="no split"):
        get_task("humaneval").load("train")


def test_gsm_template_split_is_fixed_and_disjoint():
    assert len(EVAL_TEMPLATES) == len(TRAIN_TEMPLATES) == 50
    assert set(EVAL_TEMPLATES) | set(TRAIN_TEMPLATES) == set(range(100))
    assert tuple(sorted(random.Random(SPLIT_SEED).sample(range(100), 50))) == EVAL_TEMPLATES


def test_gsm8k_originals_follow_the_template_split():
    task = get_task("gsm8k")
    train, evaluation = task.load("train", training=True), task.load("eval")
    assert len(train) == len(evaluation) == 50
    assert {e.metadata["template"] for e in evaluation} == set(EVAL_TEMPLATES)
    assert not {e.prompt for e in train} & {e.prompt for e in evaluation}
    # Each reference answer is what its own worked solution concludes.
    math = get_verifier("math")
    assert all(math.verify(e.metadata["solution"], e.reference).passed for e in train + evaluation)


def test_gsm_symbolic_variants_come_only_from_training_templates():
    rows = read_jsonl(DATA_FILE)
    assert rows and {r["template"] for r in rows} <= set(TRAIN_TEMPLATES)
    examples = get_task("gsm_symbolic").load("train", training=True)
    assert len(examples) == len(rows) and len({e.id for e in examples}) == len(rows)
    originals = {e.prompt for e in get_task("gsm8k").load("eval") + get_task("gsm8k").load("train")}
    assert not {e.prompt for e in examples} & originals
    math = get_verifier("math")
    assert all(math.verify(r["solution"], Reference(answer=r["answer"])).passed for r in rows)
