"""Exact speculative decoding: with a drafter the loop gives token-for-token the plain loop's output (and the
same per-token weights) for every rule and every gate variant (the aux-LM gates roll their own cache back),
over 52 prompts at batch 1 and 4, in float64 on tiny models; rows finish at different steps (a stop string)
and drafts are really kept and refused."""

import pytest
import torch
from test_loop_matrix import HIDDEN, build_rule  # tests/decode/test_loop_matrix.py

from dllg.decode import GenerationConfig, generate
from dllg.decode.drafting import Drafter, NgramDrafter, make_drafter
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import RULES
from dllg.gate import GATES
from dllg.tiny import tiny_expert, tiny_tokenizer

WORDS = ["def", "add", "(a, b):", "return", "a + b", "Hello", "world", "answer", "is", "42", "x", "="]
# Repetitive prompts give the n-gram drafter something to find; random tiny models also repeat themselves.
PROMPTS = [
    " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(3 + i % 6)) * (1 + i % 3) for i in range(52)
]
CONFIG = GenerationConfig(max_new_tokens=14, stop=("e", "t", "r"))  # rows stop after 1 to 14 tokens
ROLLBACK_VARIANTS = sorted(GATES)  # every variant, the aux-LM gates with their own cache too


def cases() -> list[tuple[str, str | None]]:
    return [
        (name, variant)
        for name in sorted(RULES)
        for variant in (ROLLBACK_VARIANTS if name == "dllg" else [None])
    ]


@pytest.fixture(scope="module")
def pool() -> ExpertPool:
    tok = tiny_tokenizer()
    sizes = HIDDEN[2]
    return ExpertPool(
        [tiny_expert(40 + i, hidden=h, dtype=torch.float64, tokenizer=tok) for i, h in enumerate(sizes)]
    )


def in_batches(pool, rule_factory, prompts, size, **kwargs):
    out = []
    for start in range(0, len(prompts), size):
        out += generate(pool, rule_factory(), prompts[start : start + size], CONFIG, **kwargs)
    return out


class ReplayDrafter(Drafter):
    """Drafts the plain loop's own continuation, wrong on every third token, shifted by the prompt's index:
    drafts are accepted often and rejected part-way at different places in different rows, so rows that go
    on roll back different counts in one step."""

    name = "replay"

    def __init__(self, prompts: list[list[int]], outputs: list[list[int]]) -> None:
        self.known = [(p, o) for p, o in zip(prompts, outputs, strict=True)]

    def draft(self, context: list[int], count: int) -> list[int]:
        for shift, (prompt, output) in enumerate(self.known):
            done = len(context) - len(prompt)
            if context[: len(prompt)] == prompt and context[len(prompt) :] == output[:done]:
                follow = output[done : done + count]
                return [t if (done + i + shift) % 3 else (t + 1) % 300 for i, t in enumerate(follow)]
        return []


@pytest.mark.parametrize(("name", "variant"), cases())
def test_speculative_output_equals_the_plain_loop(pool, name, variant):
    gates: dict = {}
    prompts = [pool.tokenizer(p)["input_ids"] for p in PROMPTS]
    factory = lambda: build_rule(name, variant, pool, gates)  # noqa: E731
    plain = in_batches(pool, factory, prompts, 4)
    assert len({len(g.token_ids) for g in plain}) > 2  # rows stop at different steps
    replay = ReplayDrafter(prompts, [g.token_ids for g in plain])
    for drafter, size in (("ngram", 1), ("ngram", 4), (replay, 1), (replay, 4)):
        fast = in_batches(pool, factory, prompts, size, drafter=drafter, draft_tokens=4)
        for a, b in zip(plain, fast, strict=True):
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
            torch.testing.assert_close(a.weights, b.weights, atol=1e-6, rtol=1e-6)
        if drafter is replay:  # drafts were kept and refused, row by row
            accepted, drafted = sum(g.accepted for g in fast), sum(g.drafted for g in fast)
            assert 0 < accepted < drafted


def test_drafts_the_continuation_of_the_last_tokens_earlier_occurrence():
    drafter = NgramDrafter()
    assert drafter.draft([1, 2, 3, 4, 9, 2, 3], 2) == [4, 9]  # "2 3" was followed by "4 9"
    assert drafter.draft([1, 2, 3], 2) == []  # nothing repeats
    assert drafter.draft([7, 7], 3) == [7]


def test_what_speculation_refuses(pool):
    prompts = [pool.tokenizer("Hello world")["input_ids"]]
    with pytest.raises(DllgError, match="greedy decoding only"):
        generate(pool, build_rule("uniform", None, pool, {}), prompts, GenerationConfig(temperature=0.7),
                 drafter="ngram")  # fmt: skip
    stuck = build_rule("uniform", None, pool, {})
    stuck.can_roll_back = False  # a rule whose state cannot undo positions
    with pytest.raises(DllgError, match="cannot roll its state back per row yet"):
        generate(pool, stuck, prompts, CONFIG, drafter="ngram")
    with pytest.raises(DllgError, match="unknown drafter 'oracle'"):
        make_drafter("oracle")


def test_the_cli_drafts_and_prints_the_same_answer():
    from typer.testing import CliRunner

    from dllg.cli.common import expand_multi_value_options
    from dllg.cli.main import app

    args = ["generate", "--experts", "tiny:0", "tiny:1", "--fusion", "uniform", "-n", "12"]
    runner = CliRunner()
    plain = runner.invoke(app, expand_multi_value_options([*args, "def add(a, b): return a + b"]))
    fast = runner.invoke(
        app, expand_multi_value_options([*args, "--draft", "ngram", "def add(a, b): return a + b"])
    )
    assert plain.exit_code == fast.exit_code == 0, fast.output
    assert fast.output == plain.output
    bad = runner.invoke(app, expand_multi_value_options([*args, "--draft", "psychic", "Hello"]))
    assert bad.exit_code == 1 and "unknown drafter 'psychic'" in bad.output
