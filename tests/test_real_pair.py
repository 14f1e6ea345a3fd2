"""Opt-in checks on the real Qwen2.5-Coder pair: DLLG_REAL=1 and both models fetched."""

import os

import pytest
import torch

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(os.environ.get("DLLG_REAL") != "1", reason="opt in with DLLG_REAL=1"),
]

PAIR = ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]


@pytest.fixture(scope="module")
def ensemble():
    from dllg import Ensemble

    return Ensemble(PAIR)


def test_vocabulary_is_shared_and_trimmed(ensemble):
    # Qwen2.5's 151,665 tokens; the GGUF tokenizer pads to the 151,936 head rows with [PAD<id>] placeholders.
    assert ensemble.pool.vocab_size == 151_665 < ensemble.pool[0].output_rows == len(ensemble.pool.tokenizer)


def test_uniform_fusion_writes_sensible_code(ensemble):
    out = ensemble.generate("Write a Python function that reverses a string.", "uniform", max_new_tokens=120)[
        0
    ]
    assert "def " in out.text and ("[::-1]" in out.text or "reverse" in out.text)


def test_single_expert_matches_hf_generate(ensemble):
    prompt = ensemble.encode("Write a Python function that adds two numbers.")
    ours = ensemble.generate(
        "Write a Python function that adds two numbers.",
        "single",
        expert=0,
        max_new_tokens=24,
        min_new_tokens=24,
    )[0]
    ids = torch.tensor([prompt])
    hf = ensemble.pool[0].model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, min_new_tokens=24, do_sample=False
    )
    assert ours.token_ids == hf[0, len(prompt) :].tolist()


def test_the_pair_on_llamacpp_shares_the_vocabulary_and_writes_sensible_code():
    from dllg import Ensemble

    ensemble = Ensemble(PAIR, backend="llamacpp")
    assert ensemble.pool.vocab_size == 151_665 and {e.backend for e in ensemble.pool.experts} == {"llamacpp"}
    out = ensemble.generate("Write a Python function that reverses a string.", "uniform", max_new_tokens=120)
    assert "def " in out[0].text and ("[::-1]" in out[0].text or "reverse" in out[0].text)


def test_the_preset_fuses_with_its_sharpened_gate():
    from dllg import Ensemble
    from dllg.cli.demo import REAL_PRESET

    ensemble = Ensemble.from_preset(REAL_PRESET)
    assert ensemble.names == PAIR and ensemble.gate_options == {"power": 4}
    out = ensemble.generate("Write a Python function that reverses a string.", max_new_tokens=40)[0]
    assert out.weights.shape == (len(out.token_ids), 2)
    # the gate leans on the 1.5B, unlike uniform's even split
    assert out.weights[:, 1].mean() > out.weights[:, 0].mean()
    assert "def " in out.text
