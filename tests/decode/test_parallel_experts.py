"""In-process experts stepping in threads at once (a pool on separate accelerators) decode exactly what the
sequential loop decodes: prefill, steps, speculative drafts and requests joining a running batch."""

import threading
from types import SimpleNamespace

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.experts import ExpertPool
from dllg.experts.pool import on_separate_accelerators
from dllg.fusion import make_rule
from dllg.tiny import tiny_expert, tiny_tokenizer

TEXTS = ["def add(a, b):", "Hello", "The answer is 42. Let us", "Write a Python function"]


def pool_of(parallel: bool) -> ExpertPool:
    tok = tiny_tokenizer()
    experts = [
        tiny_expert(20 + i, hidden=h, dtype=torch.float64, tokenizer=tok) for i, h in enumerate((32, 48))
    ]
    return ExpertPool(experts, parallel=parallel)


@pytest.fixture(scope="module")
def pools() -> dict[bool, ExpertPool]:
    return {False: pool_of(False), True: pool_of(True)}


def test_parallel_is_on_by_default_only_on_separate_accelerators():
    def fake(device: str, elsewhere: bool = False) -> SimpleNamespace:
        return SimpleNamespace(device=torch.device(device), runs_elsewhere=elsewhere)

    assert on_separate_accelerators([fake("cuda:0"), fake("cuda:1")])
    assert not on_separate_accelerators([fake("cuda:0"), fake("cuda:0")])
    assert not on_separate_accelerators([fake("cpu"), fake("cpu")])
    assert not on_separate_accelerators([fake("cuda:0"), fake("cuda:1", elsewhere=True)])
    assert not pool_of(False).parallel and ExpertPool(pool_of(False).experts).parallel is False


@pytest.mark.parametrize(
    ("rule", "speculate"), [("uniform", "none"), ("entropy", "ngram"), ("packllm", "expert")]
)
def test_threaded_steps_decode_what_sequential_steps_decode(pools, rule, speculate):
    prompts = [pools[False].tokenizer(t)["input_ids"] for t in TEXTS]
    config = GenerationConfig(max_new_tokens=10, speculate=speculate, draft_tokens=3)
    runs = {p: generate(pool, make_rule(rule), prompts, config) for p, pool in pools.items()}
    for sequential, threaded in zip(runs[False], runs[True], strict=True):
        assert sequential.token_ids == threaded.token_ids
        torch.testing.assert_close(sequential.weights, threaded.weights, rtol=0, atol=1e-12)


def test_the_experts_really_step_in_other_threads(pools, monkeypatch):
    seen: set[str] = set()
    expert = pools[True].experts[1]
    original = type(expert).step

    def recording_step(self, state, tokens):
        seen.add(threading.current_thread().name)
        return original(self, state, tokens)

    monkeypatch.setattr(type(expert), "step", recording_step)
    prompts = [pools[True].tokenizer(TEXTS[0])["input_ids"]]
    generate(pools[True], make_rule("uniform"), prompts, GenerationConfig(max_new_tokens=4))
    assert seen and all(name.startswith("dllg-expert") for name in seen)
