"""The pool: shared vocabulary checked token by token, output heads trimmed to it."""

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.device import resolve_dtype
from dllg.fusion import make_rule
from dllg.tiny import tiny_expert, tiny_tokenizer


def test_same_size_but_different_vocabulary_is_refused():
    base = tiny_tokenizer()
    other = tiny_tokenizer(extra_special="<|x|>")
    assert len(base) == len(other)  # sizes agree: only comparing the tokens themselves catches it
    with pytest.raises(DllgError, match=r"experts 'a' and 'b' do not share a tokenizer \(.*only in the"):
        ExpertPool([tiny_expert(1, "a", tokenizer=base), tiny_expert(2, "b", tokenizer=other)])


def test_padded_heads_are_trimmed_to_the_shared_vocabulary():
    tok = tiny_tokenizer()
    pool = ExpertPool(
        [tiny_expert(1, tokenizer=tok, padded_rows=64), tiny_expert(2, tokenizer=tok, padded_rows=7)]
    )
    assert pool.vocab_size == len(tok)
    for expert in pool.experts:
        ids = torch.tensor([[5, 6, 7]])
        out = expert.forward(ids, torch.ones_like(ids), torch.arange(3)[None], expert.new_cache())
        assert out.logits.shape == (1, 1, len(tok))
        assert out.hidden.shape == (1, 1, expert.hidden_size)


def test_trailing_placeholder_tokens_are_trimmed_and_never_chosen():
    """GGUF conversions name the padding rows [PAD<id>]: they are trimmed like padding."""
    tok = tiny_tokenizer()
    size = len(tok)
    tok.add_tokens([f"[PAD{size + i}]" for i in range(5)])
    expert = tiny_expert(1, tokenizer=tok)
    pool = ExpertPool([expert])
    assert len(tok) == size + 5 and pool.vocab_size == size
    prompt = tok("def add(a, b):")["input_ids"]
    first = generate(pool, make_rule("single"), [prompt], GenerationConfig(max_new_tokens=1))[0].token_ids[0]
    with torch.no_grad():  # a placeholder row 10x the favourite token's row: it would win untrimmed
        head = expert.model.get_output_embeddings().weight
        head[size + 2] = head[first] * 10
    out = generate(pool, make_rule("single"), [prompt], GenerationConfig(max_new_tokens=5))[0]
    assert out.token_ids[0] == first and all(t < size for t in out.token_ids)


def test_head_smaller_than_tokenizer_is_refused():
    tok = tiny_tokenizer()
    expert = tiny_expert(1, tokenizer=tok)
    expert.model.resize_token_embeddings(len(tok) - 10)
    expert._head = expert.model.get_output_embeddings()
    with pytest.raises(DllgError, match="does not cover the tokenizer"):
        ExpertPool([expert])


def test_empty_pool_and_duplicate_names():
    with pytest.raises(DllgError, match="no experts given"):
        ExpertPool([])
    tok = tiny_tokenizer()
    pool = ExpertPool([tiny_expert(1, "m", tokenizer=tok), tiny_expert(1, "m", tokenizer=tok)])
    assert pool.names == ["m", "m#2"]


def test_eos_ids_join_tokenizer_and_generation_config():
    tok = tiny_tokenizer()
    expert = tiny_expert(1, tokenizer=tok)
    expert.model.generation_config.eos_token_id = [
        tok.eos_token_id,
        tok.convert_tokens_to_ids("<|endoftext|>"),
    ]
    assert ExpertPool([expert]).eos_token_ids() == {
        tok.eos_token_id,
        tok.convert_tokens_to_ids("<|endoftext|>"),
    }


def test_dtype_choice():
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("fp32", torch.device("cpu")) == torch.float32
    with pytest.raises(DllgError, match="unknown dtype 'fp7'"):
        resolve_dtype("fp7", torch.device("cpu"))
