"""The synthetic world: seeded families, disjoint splits, real verifiers, the tokenizer and the tasks."""

from __future__ import annotations

import re

import pytest

import dllg.world.tasks  # noqa: F401  (registers world-arith, world-code, world-mixed)
from dllg.errors import DllgError
from dllg.tasks.base import TASKS
from dllg.tasks.scoring import verify_responses
from dllg.world.families import FAMILIES, mixed_parts, problem, split_problems
from dllg.world.tasks import WorldTask
from dllg.world.tokenizer import (
    build_world_tokenizer,
    load_world_tokenizer,
    save_world_tokenizer,
    world_corpus,
)

SAMPLE = 12  # examples per family sent through the real verifiers (the code sandbox costs ~0.1 s each)


@pytest.fixture(scope="module")
def tokenizer():
    return build_world_tokenizer()


@pytest.mark.parametrize("family", FAMILIES)
def test_generators_are_deterministic(family):
    assert problem(family, 7) == problem(family, 7)
    assert split_problems(family, "test", 20, 20) == split_problems.__wrapped__(family, "test", 20, 20)
    assert len({problem(family, seed).prompt for seed in range(20)}) > 1


@pytest.mark.parametrize("family", FAMILIES)
def test_train_and_test_are_disjoint(family):
    train = split_problems(family, "train", 2000, 100)
    test = split_problems(family, "test", 100, 100)
    assert len(train) == 2000 and len(test) == 100
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    assert len({p.prompt for p in train}) == len(train)


def test_mixed_solution_computes_first_then_codes():
    item = problem("mixed", 3)
    steps, code = item.solution.split("```python")
    assert "=" in steps and "k = " in steps and "return" in code
    assert "k" not in code.split("return")[1]  # the code uses k's value, not the name


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_solutions_pass_the_real_verifiers(family):
    examples = WorldTask(family).load("test", limit=SAMPLE)
    verdicts = verify_responses(examples, [e.metadata["solution"] for e in examples])
    assert [v.status for v in verdicts] == ["pass"] * SAMPLE, [v.reason for v in verdicts]


def _wrong(solution: str) -> str:
    """A wrong answer: the boxed number one higher, or the function's result one higher."""
    if "\\boxed{" in solution:
        return re.sub(r"\\boxed\{(\d+)\}", lambda m: f"\\boxed{{{int(m.group(1)) + 1}}}", solution)
    return solution.removesuffix("\n```") + " + 1\n```"


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_answers_fail(family):
    examples = WorldTask(family).load("test", limit=3)
    wrong = [_wrong(e.metadata["solution"]) for e in examples]
    assert all(w != e.metadata["solution"] for w, e in zip(wrong, examples, strict=True))
    assert not any(v.passed for v in verify_responses(examples, wrong))


def test_mixed_code_with_the_wrong_k_fails():
    """Right steps, right shape of code, but k's value off by one in the code: the tests catch it."""
    example = WorldTask("mixed").load("test", limit=1)[0]
    solution = example.metadata["solution"]
    k = int(re.search(r"^k = (\d+)$", solution, re.MULTILINE).group(1))
    steps, code = solution.split("```python")
    wrong = steps + "```python" + re.sub(rf"\b{k}\b", str(k + 1), code, count=1)
    assert wrong != solution
    assert verify_responses([example], [wrong])[0].status == "fail"


def test_tokenizer_round_trips_the_corpus_and_is_deterministic(tokenizer):
    corpus = world_corpus(200)
    encoded = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    assert tokenizer.batch_decode(encoded) == corpus
    assert build_world_tokenizer().get_vocab() == tokenizer.get_vocab()


def test_tokenizer_chat_template_and_save_load(tokenizer, tmp_path):
    messages = [{"role": "user", "content": "Compute 1 + 2 * 3."}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nCompute 1 + 2 * 3.<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    save_world_tokenizer(tokenizer, tmp_path)
    loaded = load_world_tokenizer(tmp_path)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    ids = loaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert loaded.decode(ids) == text


def test_registry_exposes_the_tasks_and_guards_the_test_split():
    for family in FAMILIES:
        task = TASKS[f"world-{family}"]
        assert task.splits == ("train", "test") and task.training_splits == ("train",)
        train = task.load("train", training=True, limit=5)
        assert len(train) == 5 and all(e.metadata["solution"] for e in train)
        assert len(task.load("test")) == 100
        with pytest.raises(DllgError, match="evaluation-only"):
            task.load("test", training=True)
    assert TASKS["world-arith"].verifier == "math" and TASKS["world-mixed"].verifier == "code"


def test_mixed_parts_cut_at_the_hand_over(tokenizer):
    """The derivation ends with the `k = N` line; the code part is the code block; together they are the
    solution, and the cut tokenizes like the whole (the experts' training relies on it)."""
    for seed in range(20):
        solution = problem("mixed", seed).solution
        steps, code = mixed_parts(solution)
        assert steps + code == solution
        assert steps.endswith("\n") and "\nk = " in steps and "```" not in steps
        assert code.startswith("```python\n") and code.endswith("```")
        ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        assert ids(steps) + ids(code) == ids(solution)


def test_mixed_parts_refuses_other_families():
    with pytest.raises(DllgError, match="not a mixed solution"):
        mixed_parts(problem("arith", 0).solution)
