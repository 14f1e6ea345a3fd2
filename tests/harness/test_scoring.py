"""Teacher-forced fused log-likelihoods against the experts read directly with transformers, and against
what the decode loop chooses under a rule with per-row state (an aux-LM gate)."""

import pytest
import torch
from harness_reference import hf_logits, token_logprobs  # tests/harness/harness_reference.py

from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.loading import load_experts
from dllg.fusion import make_rule
from dllg.harness.scoring import score_continuations
from dllg.tiny import random_gate, tiny_model, tiny_pool

TEXTS = [
    ("def add(a, b):", "\n    return a + b"),
    ("The answer is", " 42."),
    ("Hello world! How", " are you"),
]


@pytest.fixture(scope="module")
def pool(folders) -> ExpertPool:
    return ExpertPool(load_experts(folders, "cpu", "fp32"))


def encoded(pool: ExpertPool) -> tuple[list[list[int]], list[list[int]]]:
    tok = pool.tokenizer
    contexts = [tok(c)["input_ids"] for c, _ in TEXTS]
    wholes = [tok(c + t)["input_ids"] for c, t in TEXTS]
    return contexts, [w[len(c) :] for c, w in zip(contexts, wholes, strict=True)]


@pytest.mark.parametrize("expert", [0, 1])
@pytest.mark.parametrize("chunk", [1024, 3])
def test_single_rule_equals_the_expert_alone(pool, hf_models, expert, chunk):
    """Ragged contexts and continuations in one batch, and long ones in several chunks of positions."""
    contexts, continuations = encoded(pool)
    scores = score_continuations(pool, make_rule("single", expert=expert), contexts, continuations, chunk)
    for context, continuation, score in zip(contexts, continuations, scores, strict=True):
        ids = context + continuation
        logprobs = torch.log_softmax(hf_logits(hf_models[expert], ids), -1)
        expected = token_logprobs(logprobs, ids, len(context))
        assert score.logprob == pytest.approx(float(expected.sum()), abs=1e-4)
        torch.testing.assert_close(torch.tensor(score.token_logprobs), expected, atol=1e-4, rtol=0)
        best = [int(logprobs[i - 1].argmax()) for i in range(len(context), len(ids))]
        assert score.greedy == (best == continuation)


def test_uniform_and_static_equal_their_formulas(pool, hf_models):
    """uniform averages probabilities (its scores are log-probs already); static sums weighted logits, which
    the scorer renormalises with log_softmax."""
    contexts, continuations = encoded(pool)
    ids = contexts[0] + continuations[0]
    z = [hf_logits(model, ids) for model in hf_models]
    mixed = torch.log(0.5 * torch.softmax(z[0], -1) + 0.5 * torch.softmax(z[1], -1))
    weighted = torch.log_softmax(0.3 * z[0] + 0.7 * z[1], -1)
    for rule, by_hand in [(make_rule("uniform"), mixed), (make_rule("static", weights=[0.3, 0.7]), weighted)]:
        score = score_continuations(pool, rule, contexts[:1], continuations[:1])[0]
        expected = token_logprobs(by_hand, ids, len(contexts[0]))
        assert score.logprob == pytest.approx(float(expected.sum()), abs=1e-4)


@pytest.fixture(scope="module")
def gated_pool(tmp_path_factory):
    """Tiny experts and a low-rank aux-LM gate (per-row KV cache) moved off its zero init."""
    aux = tmp_path_factory.mktemp("aux")
    tiny_model(7, vocab_rows=16, hidden=32, layers=3).save_pretrained(aux)
    pool = tiny_pool(dtype="fp32", device="cpu")
    sizes = [e.hidden_size for e in pool.experts]
    gate = random_gate(pool.names, sizes, "lowrank_aux_lm", aux_model=str(aux), scale=0.3)
    return pool, gate


def test_a_stateful_gate_scores_decoded_tokens_as_their_greedy_choices(gated_pool):
    """The loop's greedy tokens are the fused argmax at every scored position: the gate gives each position
    the weights it gave while decoding, whether the positions are fused at once or two at a time."""
    pool, gate = gated_pool
    prompts = [pool.tokenizer(t)["input_ids"] for t in ["def add(a, b):", "The"]]
    out = generate(pool, make_rule("dllg", gate=gate), prompts, GenerationConfig(max_new_tokens=5))
    responses = [g.token_ids for g in out]
    at_once = score_continuations(pool, make_rule("dllg", gate=gate), prompts, responses)
    in_chunks = score_continuations(pool, make_rule("dllg", gate=gate), prompts, responses, chunk_positions=4)
    assert all(s.greedy for s in at_once)
    for a, b in zip(at_once, in_chunks, strict=True):
        torch.testing.assert_close(
            torch.tensor(a.token_logprobs), torch.tensor(b.token_logprobs), atol=1e-4, rtol=0
        )
    # a continuation the gate would not decode is no greedy choice
    changed = [[*r[:-1], (r[-1] + 1) % pool.vocab_size] for r in responses]
    assert not any(
        s.greedy for s in score_continuations(pool, make_rule("dllg", gate=gate), prompts, changed)
    )


def test_empty_continuation_is_refused(pool):
    with pytest.raises(DllgError, match="non-empty context and continuation"):
        score_continuations(pool, make_rule("uniform"), [[5, 6]], [[]])
