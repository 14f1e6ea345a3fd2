"""GPU correctness of the decode loop (runs only where CUDA is available; skipped on CPU-only machines)."""

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.experts import ExpertPool
from dllg.fusion import make_rule
from dllg.tiny import tiny_expert, tiny_tokenizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TEXTS = ["def add(a, b):", "Hello world! How are", "The answer is 4"]


def pool_on(devices: list[str], dtype: torch.dtype = torch.float64) -> ExpertPool:
    tok = tiny_tokenizer()
    experts = [tiny_expert(seed + 1, tokenizer=tok, dtype=dtype, hidden=32 * (seed + 1)) for seed in range(2)]
    for expert, device in zip(experts, devices, strict=True):
        expert.model.to(device)
    return ExpertPool(experts)


def prompts(pool: ExpertPool) -> list[list[int]]:
    return [pool.tokenizer(t)["input_ids"] for t in TEXTS]


def test_single_expert_on_gpu_matches_hf_generate():
    pool = pool_on(["cuda", "cuda"])
    for prompt in prompts(pool):
        ours = generate(
            pool, make_rule("single"), [prompt], GenerationConfig(max_new_tokens=10, min_new_tokens=10)
        )
        ids = torch.tensor([prompt], device="cuda")
        hf = pool[0].model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=10,
            min_new_tokens=10,
            do_sample=False,
            pad_token_id=0,
        )
        assert ours[0].token_ids == hf[0, len(prompt) :].tolist()


@pytest.mark.parametrize("rule", ["uniform", "entropy", "packllm", "majority", "unite"])
def test_experts_split_across_cpu_and_gpu_agree_with_all_on_cpu(rule):
    config = GenerationConfig(max_new_tokens=10, min_new_tokens=10)
    on_cpu = generate(pool_on(["cpu", "cpu"]), make_rule(rule), prompts(pool_on(["cpu", "cpu"])), config)
    split = pool_on(["cuda", "cpu"])
    across = generate(split, make_rule(rule), prompts(split), config)
    assert [g.token_ids for g in across] == [g.token_ids for g in on_cpu]


def test_batch_equals_one_at_a_time_on_gpu():
    pool = pool_on(["cuda", "cuda"])
    config = GenerationConfig(max_new_tokens=10, min_new_tokens=10)
    together = generate(pool, make_rule("uniform"), prompts(pool), config)
    alone = [generate(pool, make_rule("uniform"), [p], config)[0] for p in prompts(pool)]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]


def test_bf16_sampling_on_gpu_is_seeded_and_finite():
    pool = pool_on(["cuda", "cuda"], dtype=torch.bfloat16)
    config = GenerationConfig(max_new_tokens=8, temperature=0.8, top_p=0.9, seed=3)
    a = generate(pool, make_rule("entropy"), prompts(pool), config)
    b = generate(pool, make_rule("entropy"), prompts(pool), config)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert all(torch.isfinite(g.weights).all() for g in a)
