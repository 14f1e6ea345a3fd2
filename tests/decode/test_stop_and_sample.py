"""Stopping (EOS, stop strings, budget), finished rows leaving the batch, and seeded sampling."""

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.decode.sampling import top_p_filter
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import make_rule
from dllg.tiny import tiny_expert, tiny_tokenizer


@pytest.fixture(scope="module")
def pool() -> ExpertPool:
    tok = tiny_tokenizer()
    return ExpertPool([tiny_expert(1, tokenizer=tok), tiny_expert(2, tokenizer=tok)])


def prompts(pool, texts=("def add(a, b):", "Hello world")):
    return [pool.tokenizer(t)["input_ids"] for t in texts]


def test_eos_stops_one_row_while_the_other_goes_on(pool):
    free = generate(
        pool, make_rule("uniform"), prompts(pool), GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    )
    # Make the first sequence's 3rd token the EOS: declare it an EOS id for this pool.
    eos = free[0].token_ids[2]
    assert eos not in free[1].token_ids[:8], "pick prompts whose continuations differ"
    pool[0].model.generation_config.eos_token_id = [pool.tokenizer.eos_token_id, eos]
    try:
        out = generate(pool, make_rule("uniform"), prompts(pool), GenerationConfig(max_new_tokens=8))
    finally:
        pool[0].model.generation_config.eos_token_id = pool.tokenizer.eos_token_id
    assert out[0].finish_reason == "eos" and out[0].token_ids == free[0].token_ids[:3]
    assert out[0].text == pool.tokenizer.decode(free[0].token_ids[:2], skip_special_tokens=True)
    assert out[1].finish_reason == "length" and out[1].token_ids == free[1].token_ids
    assert out[0].weights.shape == (3, 2) and out[1].weights.shape == (8, 2)


def test_finished_rows_stop_costing_work(pool):
    calls: list[int] = []
    original = pool[0].forward

    def counting(input_ids, *args, **kwargs):
        calls.append(input_ids.shape[0])
        return original(input_ids, *args, **kwargs)

    pool[0].forward = counting
    try:
        first = generate(pool, make_rule("single"), prompts(pool)[:1], GenerationConfig(max_new_tokens=1))
        eos_first = first[0].token_ids[0]
        pool[0].model.generation_config.eos_token_id = [pool.tokenizer.eos_token_id, eos_first]
        calls.clear()
        generate(pool, make_rule("single"), prompts(pool), GenerationConfig(max_new_tokens=4))
    finally:
        pool[0].forward = original
        pool[0].model.generation_config.eos_token_id = pool.tokenizer.eos_token_id
    assert calls[0] == 2  # the prefill reads both prompts
    assert calls[1:] and all(size == 1 for size in calls[1:])  # then only the unfinished row is fed


def test_stop_string_cuts_the_text(pool):
    free = generate(pool, make_rule("uniform"), prompts(pool)[:1], GenerationConfig(max_new_tokens=10))[0]
    text = pool.tokenizer.decode(free.token_ids, skip_special_tokens=True)
    stop = text[3:5]
    assert stop.strip(), "need a visible stop string"
    out = generate(
        pool, make_rule("uniform"), prompts(pool)[:1], GenerationConfig(max_new_tokens=10, stop=(stop,))
    )[0]
    assert out.finish_reason == "stop"
    assert out.text == text[: text.find(stop)]
    assert len(out.token_ids) < len(free.token_ids)


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(pool):
    config = GenerationConfig(max_new_tokens=12, min_new_tokens=12, temperature=1.5, seed=7)
    a = generate(pool, make_rule("uniform"), prompts(pool), config)
    b = generate(pool, make_rule("uniform"), prompts(pool), config)
    greedy = generate(
        pool, make_rule("uniform"), prompts(pool), GenerationConfig(max_new_tokens=12, min_new_tokens=12)
    )
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in greedy]


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(top_p_filter(logits, 0.1))
    assert kept.tolist() == [[True, False, False, False]]


def test_nan_weights_are_an_error(pool):
    class Broken(type(make_rule("uniform"))):
        def weights(self, inputs):
            return torch.full(inputs.logits.shape[:-1], float("nan"))

    with pytest.raises(DllgError, match="non-finite weights"):
        generate(pool, Broken(), prompts(pool), GenerationConfig(max_new_tokens=2))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens=0"),
        ({"temperature": -1}, "temperature=-1"),
        ({"top_p": 0}, "top_p=0"),
        ({"stop": ("",)}, "empty stop string"),
    ],
)
def test_bad_generation_settings(options, message):
    with pytest.raises(DllgError, match=message):
        GenerationConfig(**options)


def test_empty_prompt_is_an_error(pool):
    with pytest.raises(DllgError, match="at least one token"):
        generate(pool, make_rule("uniform"), [[]], GenerationConfig(max_new_tokens=2))
