"""The fused loop against Hugging Face generate, batching and caching: token-for-token identity."""

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.experts import ExpertPool
from dllg.experts.padding import left_pad
from dllg.fusion import make_rule
from dllg.tiny import tiny_expert, tiny_tokenizer

PROMPTS = ["def add(a, b):", "Hello world! How are", "The answer is 4", "Write"]


def encode(texts: list[str]) -> list[list[int]]:
    tok = tiny_tokenizer()
    return [tok(t)["input_ids"] for t in texts]


@pytest.fixture(scope="module")
def pool64() -> ExpertPool:
    # float64 so that padding and caching change no greedy choice through rounding.
    tok = tiny_tokenizer()
    return ExpertPool(
        [
            tiny_expert(1, dtype=torch.float64, tokenizer=tok, padded_rows=0),
            tiny_expert(2, dtype=torch.float64, tokenizer=tok, hidden=48),
        ]
    )


def hf_greedy(model, prompt: list[int], max_new_tokens: int) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("rule", [("single", {"expert": 1}), ("static", {"weights": [0.0, 1.0]})])
def test_one_expert_matches_hf_generate(pool64, rule):
    name, options = rule
    config = GenerationConfig(max_new_tokens=12, min_new_tokens=12)
    for prompt in encode(PROMPTS):
        ours = generate(pool64, make_rule(name, **options), [prompt], config)[0]
        assert ours.token_ids == hf_greedy(pool64[1].model, prompt, 12)
        assert ours.weights.shape == (12, 2)
        assert torch.equal(ours.weights[:, 1], torch.ones(12)) and torch.equal(
            ours.weights[:, 0], torch.zeros(12)
        )


@pytest.mark.parametrize("rule", ["uniform", "entropy", "packllm", "majority", "unite"])
def test_batch_equals_one_at_a_time(pool64, rule):
    config = GenerationConfig(max_new_tokens=10, min_new_tokens=10)
    prompts = encode(PROMPTS)
    together = generate(pool64, make_rule(rule), prompts, config)
    for prompt, batched in zip(prompts, together, strict=True):
        alone = generate(pool64, make_rule(rule), [prompt], config)[0]
        assert batched.token_ids == alone.token_ids
        torch.testing.assert_close(batched.weights, alone.weights)


def recompute_greedy(pool: ExpertPool, rule_name: str, prompt: list[int], steps: int) -> list[int]:
    """The same fusion without any cache: every step re-reads the whole sequence."""
    rule = make_rule(rule_name)
    running = rule.bind(pool.names)
    tokens = list(prompt)
    for _ in range(steps):
        ids, mask = left_pad([tokens], 0)
        outs = [
            pool[i].forward(ids, mask, torch.arange(len(tokens))[None], pool[i].new_cache()) for i in running
        ]
        if len(tokens) == len(prompt) and rule.needs_prompt_nll:
            from dllg.fusion import PromptContext

            rule.start(
                PromptContext(ids, mask, torch.stack([pool[i].mean_nll([tokens]) for i in running], -1))
            )
        from dllg.fusion import FusionInput

        fused = rule.fuse(
            FusionInput(
                torch.stack([o.logits[:, -1].float() for o in outs], 1), [o.hidden[:, -1] for o in outs]
            )
        )
        tokens.append(int(fused.scores.argmax(-1)))
    return tokens[len(prompt) :]


@pytest.mark.parametrize("rule", ["uniform", "packllm", "unite"])
def test_cached_loop_equals_recomputation(pool64, rule):
    prompt = encode(PROMPTS)[0]
    cached = generate(pool64, make_rule(rule), [prompt], GenerationConfig(max_new_tokens=8, min_new_tokens=8))
    assert cached[0].token_ids == recompute_greedy(pool64, rule, prompt, 8)


def test_padded_output_rows_are_never_chosen():
    tok = tiny_tokenizer()
    expert = tiny_expert(3, tokenizer=tok, padded_rows=40)
    pool = ExpertPool([expert])
    assert expert.vocab_size == len(tok)
    prompts = encode(PROMPTS[:2])
    firsts = [
        g.token_ids[0]
        for g in generate(pool, make_rule("single"), prompts, GenerationConfig(max_new_tokens=1))
    ]
    with torch.no_grad():  # padded rows 10x each favourite token's row: they would win untrimmed
        head = expert.model.get_output_embeddings().weight
        for offset, first in enumerate(firsts):
            head[len(tok) + 5 + offset] = head[first] * 10
    out = generate(pool, make_rule("single"), prompts, GenerationConfig(max_new_tokens=6))
    assert [g.token_ids[0] for g in out] == firsts
    assert all(t < len(tok) for g in out for t in g.token_ids)
