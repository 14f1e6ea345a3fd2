"""GGUF -> bf16 safetensors folder, on a tiny Qwen2 GGUF written here with the `gguf` package."""

import hashlib
import json
import re
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode

from dllg.errors import DllgError
from dllg.sources import gguf as gguf_module
from dllg.sources.gguf import MARKER, WEIGHTS, convert_gguf, is_converted, read_marker, unique_state_dict

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 64, 4, 2, 128, 2
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["d e", "de f", "Ġ r", "Ġr e", "t u", "tu r", "Ġre tur", "n (", "Ġ (", ") :"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def vocabulary() -> tuple[list[str], list[int]]:
    tokens = list(bytes_to_unicode().values())
    tokens += ["".join(m.split(" ")) for m in MERGES]
    types = [1] * len(tokens) + [3] * len(SPECIALS)  # 1 normal, 3 control
    return tokens + SPECIALS, types


def write_tiny_gguf(path: Path, tied: bool, chat_template: str | None = CHAT_TEMPLATE) -> None:
    """A valid little Qwen2 GGUF: f32 norms and biases, Q8_0 matrices (so loading dequantises)."""
    tokens, types = vocabulary()
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("tiny qwen2")
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def matrix(name: str, rows: int, cols: int) -> None:
        data = (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)
        packed = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def vector(name: str, size: int, around: float = 0.0) -> None:
        writer.add_tensor(name, (around + rng.standard_normal(size) * 0.1).astype(np.float32))

    head_dim = HIDDEN // HEADS
    matrix("token_embd.weight", len(tokens), HIDDEN)
    for i in range(LAYERS):
        vector(f"blk.{i}.attn_norm.weight", HIDDEN, 1.0)
        for name, rows in (
            ("attn_q", HIDDEN),
            ("attn_k", KV_HEADS * head_dim),
            ("attn_v", KV_HEADS * head_dim),
        ):
            matrix(f"blk.{i}.{name}.weight", rows, HIDDEN)
            vector(f"blk.{i}.{name}.bias", rows)
        matrix(f"blk.{i}.attn_output.weight", HIDDEN, HIDDEN)
        vector(f"blk.{i}.ffn_norm.weight", HIDDEN, 1.0)
        matrix(f"blk.{i}.ffn_gate.weight", FFN, HIDDEN)
        matrix(f"blk.{i}.ffn_up.weight", FFN, HIDDEN)
        matrix(f"blk.{i}.ffn_down.weight", HIDDEN, FFN)
    vector("output_norm.weight", HIDDEN, 1.0)
    if not tied:
        matrix("output.weight", len(tokens), HIDDEN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(gguf file, converted folder), converted once per module for each tying."""
    root = tmp_path_factory.mktemp("tied" if request.param else "untied")
    source = root / "tiny.gguf"
    write_tiny_gguf(source, tied=request.param)
    out = root / "models" / "tiny"
    convert_gguf(source, out, "tiny", sha256(source), eos_tokens=("<|im_end|>", "<|endoftext|>"))
    return source, out


def test_folder_has_every_file_and_the_marker(converted: tuple[Path, Path]) -> None:
    source, out = converted
    names = {p.name for p in out.iterdir()}
    assert {WEIGHTS, "config.json", "generation_config.json", "tokenizer.json", MARKER} <= names
    assert not out.with_name(out.name + ".partial").exists()
    marker = read_marker(out)
    assert marker is not None and marker["source"] == "tiny" and marker["gguf_sha256"] == sha256(source)
    assert is_converted(out, sha256(source)) and not is_converted(out, "0" * 64)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    assert (out / WEIGHTS).stat().st_mode == (out / "config.json").stat().st_mode  # not safetensors' 0600


def test_weights_are_bf16_and_ties_are_written_once(converted: tuple[Path, Path]) -> None:
    _, out = converted
    tied = "untied" not in str(out)
    with safe_open(str(out / WEIGHTS), "pt") as weights:
        keys = set(weights.keys())
        assert {weights.get_slice(k).get_dtype() for k in keys} == {"BF16"}
    assert ("lm_head.weight" in keys) == (not tied)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16
    same = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert same == tied


def test_reloaded_folder_matches_the_gguf(converted: tuple[Path, Path]) -> None:
    source, out = converted
    model = AutoModelForCausalLM.from_pretrained(out)
    from_gguf = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.bfloat16
    )
    ids = torch.tensor([[5, 70, 200, 256, 260]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, from_gguf(ids).logits)


def test_tokenizer_chat_template_and_eos_survive(converted: tuple[Path, Path]) -> None:
    _, out = converted
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "def f"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\ndef f<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text).input_ids
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in ids  # special tokens stay whole
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [im_end, tokenizer.convert_tokens_to_ids("<|endoftext|>")]


def test_interrupted_conversion_leaves_no_folder_and_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "tiny.gguf"
    write_tiny_gguf(source, tied=True, chat_template=None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")  # a folder without the marker: incomplete

    def broken_verify(*args: object) -> None:
        raise DllgError("simulated crash")

    monkeypatch.setattr(gguf_module, "verify_folder", broken_verify)
    with pytest.raises(DllgError, match="simulated"):
        convert_gguf(source, out, "tiny", sha256(source))
    assert not is_converted(out)
    monkeypatch.undo()
    convert_gguf(source, out, "tiny", sha256(source))  # no eos_tokens: falls back to the tokenizer's eos
    assert is_converted(out, sha256(source))
    assert not out.with_name("out.partial").exists() and not out.with_name("out.old").exists()
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == AutoTokenizer.from_pretrained(out).convert_tokens_to_ids(
        "<|im_end|>"
    )


def test_unknown_eos_token_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "tiny.gguf"
    write_tiny_gguf(source, tied=True)
    with pytest.raises(DllgError, match=re.escape("'<|eot_id|>' is not in the GGUF's vocabulary")):
        convert_gguf(
            source, tmp_path / "out", "tiny", sha256(source), eos_tokens=("<|eot_id|>",), verify=False
        )


def tiny_model(tied: bool) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied,
    )  # fmt: skip
    return Qwen2ForCausalLM(config)


def test_unique_state_dict_drops_a_declared_tie_and_clones_an_undeclared_share() -> None:
    assert "lm_head.weight" not in unique_state_dict(tiny_model(tied=True))
    model = tiny_model(tied=False)
    model.lm_head.weight = model.model.embed_tokens.weight  # shared, but the config does not say so
    tensors = unique_state_dict(model)
    assert torch.equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"])
    assert tensors["lm_head.weight"].data_ptr() != tensors["model.embed_tokens.weight"].data_ptr()
