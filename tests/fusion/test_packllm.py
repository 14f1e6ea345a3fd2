"""Pack of LLMs as published ("sim"): softmax(-NLL/tau) weights from the user's input alone, logits summed."""

import torch

from dllg.decode import GenerationConfig
from dllg.decode.prompts import encode_user_text, user_text
from dllg.ensemble import Ensemble
from dllg.fusion import FusionInput, PromptContext, make_rule
from dllg.tiny import tiny_expert, tiny_tokenizer

NLL = torch.tensor([[1.0, 2.0]])
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "Write a Python function that reverses a string."},
]


def test_packllm_sums_weighted_logits_by_default():
    rule = make_rule("packllm")
    assert rule.space == "logits"
    rule.bind(["a", "b"])
    rule.start(
        PromptContext(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2), torch.tensor([[1.0, 2.0]]))
    )
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, -1.0]]])
    out = rule.fuse(FusionInput(logits=logits, hidden=[torch.zeros(1, 4)] * 2))
    weights = torch.softmax(torch.tensor([-1.0, -2.0]), -1)
    torch.testing.assert_close(out.scores[0], weights[0] * logits[0, 0] + weights[1] * logits[0, 1])
    probs = make_rule("packllm", space="probs")  # the earlier behaviour stays an option
    probs.bind(["a", "b"])
    probs.start(
        PromptContext(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2), torch.tensor([[1.0, 2.0]]))
    )
    mixed = probs.fuse(FusionInput(logits=logits, hidden=[torch.zeros(1, 4)] * 2)).scores[0].exp()
    torch.testing.assert_close(mixed, (weights[:, None] * torch.softmax(logits[0], -1)).sum(0))


def test_user_text_drops_the_system_prompt_and_the_template():
    assert user_text(MESSAGES) == MESSAGES[1]["content"]
    assert user_text("plain text") == "plain text"


def test_generation_weights_come_from_the_users_text_alone():
    tok = tiny_tokenizer()
    experts = [tiny_expert(seed, tokenizer=tok, dtype=torch.float64) for seed in (0, 1)]
    ensemble = Ensemble(experts)
    out = ensemble.generate([MESSAGES], "packllm", max_new_tokens=3)[0]

    def nll_of(ids: list[int]) -> torch.Tensor:
        return torch.stack([e.mean_nll([ids])[0] for e in experts])

    user_ids = encode_user_text(tok, MESSAGES)
    expected = torch.softmax(-nll_of(user_ids), -1).float()
    torch.testing.assert_close(out.weights[0], expected)
    torch.testing.assert_close(out.weights[-1], expected)  # fixed for the whole response
    # Scoring the templated prompt (system prompt included) would give other weights: the test can tell.
    templated = torch.softmax(-nll_of(ensemble.encode(MESSAGES)), -1).float()
    assert not torch.allclose(templated, expected, atol=1e-3)


def test_loop_refuses_scored_prompts_that_do_not_match_the_prompts():
    import pytest

    from dllg.decode import generate
    from dllg.errors import DllgError
    from dllg.experts import ExpertPool

    tok = tiny_tokenizer()
    pool = ExpertPool([tiny_expert(0, tokenizer=tok), tiny_expert(1, tokenizer=tok)])
    with pytest.raises(DllgError, match="2 scored prompts for 1 prompts"):
        generate(pool, make_rule("packllm"), [[5, 6]], GenerationConfig(max_new_tokens=1), [[5], [6]])
