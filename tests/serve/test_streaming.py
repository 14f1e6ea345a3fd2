"""Text deltas from arriving tokens: each token decoded after the ones before it, and text that may begin a
stop string held back until it is clear, so that the deltas join to the answer and never show the stop."""

import pytest
import torch
from serve_helpers import tiny_pool

from dllg.decode import GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.fusion import make_rule
from dllg.serve.streaming import AnswerStream, stop_prefix_length
from dllg.view.tokens import TokenText, token_pieces


@pytest.fixture(scope="module")
def pool():
    return tiny_pool()


def answer(pool, prompt: str, **settings):
    ids = encode_prompt(pool.tokenizer, prompt)
    return generate(pool, make_rule("uniform"), [ids], GenerationConfig(**settings))[0]


def test_token_text_gives_the_pieces_of_the_whole_list(pool):
    tokenizer = pool.tokenizer
    ids = tokenizer("def add(a, b):\n    return a + b  # héllo wörld ✓")["input_ids"]
    generated = answer(pool, "Hello", max_new_tokens=30, min_new_tokens=30).token_ids  # split characters too
    ids += [i for i in generated if i not in tokenizer.all_special_ids]
    text = TokenText(tokenizer)
    pieces = [text.add(i) for i in ids]
    pieces[-1] += text.rest()
    assert pieces == token_pieces(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids)


def test_token_text_skips_special_tokens_as_the_answer_does(pool):
    tokenizer = pool.tokenizer
    ids = tokenizer("Hello world")["input_ids"]
    ids[1:1] = [tokenizer.convert_tokens_to_ids("<|im_start|>")]
    text = TokenText(tokenizer)
    pieces = [text.add(i) for i in ids]
    assert pieces[1] == ""
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True) == "Hello world"


@pytest.mark.parametrize(
    ("text", "stops", "held"),
    [("abc", ["cde"], 1), ("abcd", ["cde"], 2), ("abc", ["xyz"], 0), ("ab", ["abc", "b"], 2), ("", ["a"], 0)],
)
def test_stop_prefix_length(text, stops, held):
    assert stop_prefix_length(text, stops) == held


def replay(pool, generation, stops, step: int = 1):
    """Push a finished answer's tokens `step` at a time; every delta sent, in order."""
    stream = AnswerStream(pool.tokenizer, stops)
    tokens, weights = generation.token_ids, generation.weights.tolist()
    sent = []
    for start in range(0, len(tokens), step):
        end = min(start + step, len(tokens))
        done = generation if end == len(tokens) else None
        sent.append(stream.push(tokens[start:end], weights[start:end], done))
    return sent


@pytest.mark.parametrize("step", [1, 3])
def test_deltas_join_to_the_answer_and_never_show_the_stop(pool, step):
    free = answer(pool, "Write a Python function.", max_new_tokens=40, min_new_tokens=40).text
    assert len(free) > 20
    stop = free[12:15]
    stopped = answer(pool, "Write a Python function.", max_new_tokens=40, min_new_tokens=0, stop=(stop,))
    assert stopped.finish_reason == "stop"
    deltas = replay(pool, stopped, (stop,), step)
    shown = ""
    for delta in deltas:
        shown += "".join(text for text, _ in delta)
        assert stop not in shown and free.startswith(shown)
    assert shown == stopped.text == free[: free.find(stop)]
    weights = torch.tensor([row for delta in deltas for _, row in delta])
    assert torch.equal(weights, stopped.weights[: len(weights)])


def test_without_stops_every_token_goes_at_once(pool):
    generation = answer(pool, "Hello", max_new_tokens=12, min_new_tokens=12)
    deltas = replay(pool, generation, ())
    assert sum(len(d) for d in deltas) == 12
    assert "".join(text for d in deltas for text, _ in d) == generation.text
    text = TokenText(pool.tokenizer)
    complete = [bool(text.add(token)) for token in generation.token_ids]
    released = 0
    for index, delta in enumerate(deltas[:-1]):  # a token goes as soon as its text is whole
        released += len(delta)
        assert released == max((i + 1 for i in range(index + 1) if complete[i]), default=0)
