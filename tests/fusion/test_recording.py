"""The recording wrapper changes nothing of the rule it wraps: a gate that keeps per-row state gives the same
tokens and weights through it, with speculative drafts rolled back, and every fused position is recorded."""

import torch

from dllg.decode import GenerationConfig, generate
from dllg.experts import ExpertPool
from dllg.fusion import make_rule
from dllg.fusion.recording import RecordingRule
from dllg.tiny import random_gate, tiny_expert, tiny_model, tiny_tokenizer


def test_a_recorded_gate_decodes_as_the_gate_alone_and_keeps_every_fused_position():
    tokenizer = tiny_tokenizer()
    pool = ExpertPool([tiny_expert(seed, tokenizer=tokenizer) for seed in (3, 4)])
    gate = random_gate(
        pool.names,
        [e.hidden_size for e in pool.experts],
        "lowrank_aux_lm",  # its own KV cache: rollback must reach it
        aux_model=tiny_model(99, vocab_rows=16, hidden=32, layers=2),
    ).eval()
    torch.nn.init.normal_(gate.head[-1].weight, std=1.0)  # weights that vary by row and step
    prompts = [tokenizer(text)["input_ids"] for text in ("a b a b a b a b", "x y z x y z x y", "Hello")]
    config = GenerationConfig(max_new_tokens=12, speculate="ngram", draft_tokens=3)

    alone = generate(pool, make_rule("dllg", gate=gate), prompts, config)
    recorder = RecordingRule(make_rule("dllg", gate=gate))
    recorded = generate(pool, recorder, prompts, config)

    assert sum(g.drafted for g in recorded) > sum(g.accepted for g in recorded)  # some drafts rolled back
    for a, b in zip(alone, recorded, strict=True):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.weights, b.weights)
    fused_positions = sum(out.scores[..., 0].numel() for _, out in recorder.calls)
    assert fused_positions >= sum(len(g.token_ids) for g in recorded)
    assert recorder.last_scores.shape[-1] == pool.vocab_size
