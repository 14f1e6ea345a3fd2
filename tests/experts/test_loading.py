"""Loading experts from local folders: the tokenizer comes back exactly as it was saved."""

import json

import pytest
from transformers import Qwen2Config, Qwen2ForCausalLM

from dllg.errors import DllgError
from dllg.experts.loading import load_expert
from dllg.world.tokenizer import build_world_tokenizer

SAMPLE = "Let k be 3 + 4 * 2. Write a Python function f(x) that returns x * k.\n4 * 2 = 8\n3 + 8 = 11"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A qwen2 model saved with a tokenizer that is not Qwen's (the world's BPE, own pre-tokenizer)."""
    tokenizer = build_world_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    path = tmp_path_factory.mktemp("qwen2-world-tokenizer")
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, tokenizer


def test_a_saved_generic_tokenizer_is_not_replaced_by_the_model_types(folder):
    """AutoTokenizer alone would give Qwen2Tokenizer here, which splits numbers differently."""
    path, original = folder
    loaded = load_expert(str(path), device="cpu", dtype="float32").tokenizer
    assert loaded(SAMPLE)["input_ids"] == original(SAMPLE)["input_ids"]
    assert loaded.eos_token_id == original.eos_token_id and loaded.pad_token_id == original.pad_token_id


def test_a_corrupt_tokenizer_config_is_named(folder, tmp_path):
    path, _ = folder
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in path.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(DllgError, match=r"tokenizer_config\.json is not valid JSON"):
        load_expert(str(broken), device="cpu", dtype="float32")
    assert json.loads((path / "tokenizer_config.json").read_text())  # the original is untouched
