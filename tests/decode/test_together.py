"""Rules decoding together: each prompt's answers share a row while their rules choose the same tokens and
fork where they do not. Every (prompt, rule) must get token for token, weight for weight, what the rule
gets alone, with rows joining and leaving a capped batch, for every rule and gate variant (float64 tiny
models); the shared prefixes must save expert steps, and what cannot be decoded together is refused."""

import pytest
import torch
from test_loop_matrix import HIDDEN, build_rule  # tests/decode/test_loop_matrix.py

from dllg.decode import GenerationConfig, generate
from dllg.decode.generate import generate_together
from dllg.decode.loop import Decoder
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import RULES, make_rule
from dllg.gate import GATES
from dllg.tiny import tiny_expert, tiny_tokenizer

WORDS = ["def", "add", "(a, b):", "return", "a + b", "Hello", "world", "answer", "is", "42", "x", "="]
PROMPTS = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(2 + (i * 7) % 9)) for i in range(6)]
CONFIG = GenerationConfig(max_new_tokens=12, stop=("e",))  # rows stop at different steps


@pytest.fixture(scope="module")
def pool() -> ExpertPool:
    tok = tiny_tokenizer()
    return ExpertPool(
        [tiny_expert(90 + i, hidden=h, dtype=torch.float64, tokenizer=tok) for i, h in enumerate(HIDDEN[2])]
    )


@pytest.fixture(scope="module")
def rules(pool):
    """Every rule that fuses both experts (`single` runs one: it cannot share their rows)."""
    gates: dict = {}
    cases = [(n, v) for n in sorted(RULES) for v in (sorted(GATES) if n == "dllg" else [None])]
    return [lambda n=n, v=v: build_rule(n, v, pool, gates) for n, v in cases if n != "single"]


def encode(pool: ExpertPool, texts: list[str]) -> list[list[int]]:
    return [pool.tokenizer(t)["input_ids"] for t in texts]


def alone(pool, make, prompts):
    return generate(pool, make(), prompts, CONFIG)


def test_every_rule_gets_its_own_answer_when_decoding_together(pool, rules):
    prompts = encode(pool, PROMPTS)
    expected = [alone(pool, make, prompts) for make in rules]
    stepped = []
    original = Decoder._feed

    def counting(self):
        stepped.append(len(self._rows))
        original(self)

    Decoder._feed = counting
    try:
        together = dict(generate_together(pool, [make() for make in rules], prompts, CONFIG, max_rows=3))
    finally:
        Decoder._feed = original
    assert len(together) == len(prompts) * len(rules)
    for r, answers in enumerate(expected):
        for i, answer in enumerate(answers):
            got = together[i, r]
            assert got.token_ids == answer.token_ids and got.finish_reason == answer.finish_reason, (r, i)
            assert got.text == answer.text
            torch.testing.assert_close(got.weights, answer.weights, atol=1e-6, rtol=1e-6)
    # the rules disagreed somewhere (rows forked past the cap), yet shared steps were taken once
    assert max(stepped) > 3
    apart = sum(len(a.token_ids) - 1 for answers in expected for a in answers)  # steps fed after prefill
    assert sum(stepped) < 0.8 * apart  # forking every row at once would feed `apart`


def test_each_prompt_decodes_with_the_rules_it_names(pool, rules):
    prompts = encode(pool, PROMPTS[:3])
    chosen = [[1], [0, 2], [2, 1, 0]]
    together = dict(
        generate_together(pool, [make() for make in rules[:3]], prompts, CONFIG, rules_per_prompt=chosen)
    )
    assert sorted(together) == sorted((i, r) for i, names in enumerate(chosen) for r in names)
    for (i, r), got in together.items():
        assert got.token_ids == alone(pool, rules[r], [prompts[i]])[0].token_ids


def test_a_cancelled_request_leaves_the_others_on_its_row_going(pool):
    prompts = encode(pool, PROMPTS[:1])
    config = GenerationConfig(max_new_tokens=8)
    decoder = Decoder(pool, [make_rule("uniform"), make_rule("static", weights=[0.5, 0.5])])
    uniform, static = decoder.submit(prompts, config)
    decoder.step()
    decoder.cancel(uniform)
    finished = {}
    while decoder.active:
        for update in decoder.step():
            if update.finished is not None:
                finished[update.request] = update.finished
    decoder.close()
    assert finished[uniform].finish_reason == "cancelled"
    static_alone = generate(pool, make_rule("static", weights=[0.5, 0.5]), prompts, config)[0]
    assert finished[static].token_ids == static_alone.token_ids and len(static_alone.token_ids) == 8


def test_what_cannot_decode_together_is_refused(pool):
    with pytest.raises(DllgError, match="run different experts"):
        Decoder(pool, [make_rule("uniform"), make_rule("single", expert=0)])
    with pytest.raises(DllgError, match="cannot draft"):
        Decoder(pool, [make_rule("uniform"), make_rule("entropy")], drafter="ngram")
    decoder = Decoder(pool, [make_rule("uniform"), make_rule("entropy")])
    with pytest.raises(DllgError, match="only greedily"):
        decoder.submit(encode(pool, PROMPTS[:1]), GenerationConfig(temperature=0.7))
    with pytest.raises(DllgError, match="rule indices"):
        decoder.submit(encode(pool, PROMPTS[:1]), CONFIG, rules=[[2]])
