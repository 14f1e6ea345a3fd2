"""Forked rows in the llama.cpp backend (rules decoding together): a row named twice in `keep_rows` becomes
two sequences that continue from the same KV state, each as a fresh decode of its own tokens would, past
the sequence ids the expert was made for; and rules decoding together over llama.cpp experts give each
prompt the answers the rules give alone."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from gguf_export import export_gguf  # tests/experts/gguf_export.py

from dllg.decode import GenerationConfig, generate
from dllg.decode.generate import generate_together
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import make_rule
from dllg.tiny import random_gate, tiny_expert, tiny_tokenizer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)

WORDS = ["def", "add", "Hello", "world", "answer", "is", "42", "Let", "us", "compute", "string", "you"]
PROMPTS = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(2 + i % 5)) for i in range(6)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggufs")
    tokenizer = tiny_tokenizer()
    hf = [tiny_expert(seed, tokenizer=tokenizer, hidden=32 * (seed + 1)) for seed in (3, 4)]
    return tokenizer, [export_gguf(e, folder / f"expert{i}.gguf") for i, e in enumerate(hf)]


def expert(files, index: int = 0, **options):
    from dllg.experts.llamacpp import LlamaCppExpert

    tokenizer, paths = files
    return LlamaCppExpert(f"e{index}", paths[index], tokenizer, **options)


def test_a_forked_row_continues_from_its_sources_state_past_the_sequence_ids_it_had(files):
    forking = expert(files, max_sequences=2)
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    state, _ = forking.prefill(prompts)
    forking.step(state, torch.tensor([[12], [13]]))
    forking.keep_rows(state, torch.tensor([1, 0, 1, 0, 1]))  # 5 rows in an expert made for 2
    assert forking.max_sequences >= 5 and len(set(state.seqs)) == 5
    tokens = torch.tensor([[20], [21], [22], [23], [24]])
    forked = forking.step(state, tokens).logits[:, -1]
    forking.release(state)

    fresh = expert(files, max_sequences=8)
    made = [prompts[1] + [13], prompts[0] + [12]] * 2 + [prompts[1] + [13]]
    again, _ = fresh.prefill(made)
    reference = fresh.step(again, tokens).logits[:, -1]
    fresh.release(again)
    # the very same arithmetic but for batch shapes (~1e-5 on these fp32 models); a row reading another
    # row's cells, or none, would be off by whole units
    torch.testing.assert_close(forked, reference, atol=1e-3, rtol=1e-3)
    assert not torch.allclose(forked[0], forked[2], atol=1e-2)  # one state, other tokens: other logits


def test_a_shared_memory_takes_more_rows_than_it_was_made_for(files):
    small, big = expert(files, max_sequences=2), expert(files, max_sequences=8)
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14]]
    outputs = []
    for each in (small, big):
        state, out = each.prefill(prompts)
        outputs.append(out.logits)
        each.release(state)
    assert small.max_sequences == 4
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-4, rtol=1e-4)


def test_a_split_memory_refuses_to_fork(files):
    split = expert(files, max_sequences=2, kv_split=True)
    state, _ = split.prefill([[5, 6, 7]])
    with pytest.raises(DllgError, match="cannot fork in a split KV memory"):
        split.keep_rows(state, torch.tensor([0, 0]))
    split.release(state)


def test_rules_decoding_together_on_llamacpp_experts_get_their_own_answers(files):
    pool = ExpertPool([expert(files, 0, max_sequences=2), expert(files, 1, max_sequences=2)])
    gate = random_gate(pool.names, [e.hidden_size for e in pool.experts], head_hidden=256)

    def rules():
        return [make_rule("uniform"), make_rule("entropy"), make_rule("dllg", gate=gate)]

    config = GenerationConfig(max_new_tokens=10)
    prompts = [pool.tokenizer(t)["input_ids"] for t in PROMPTS]
    together = dict(generate_together(pool, rules(), prompts, config, max_rows=2))
    forked = False
    for r, rule in enumerate(rules()):
        for i, answer in enumerate(generate(pool, rule, prompts, config, max_rows=2)):
            assert together[i, r].token_ids == answer.token_ids, (r, i)
            forked |= together[i, 0].token_ids != together[i, r].token_ids
    assert forked  # the rules did part ways somewhere
