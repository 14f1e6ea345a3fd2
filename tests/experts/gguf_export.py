"""Write a tiny Hugging Face Qwen2 expert as a float GGUF with the `gguf` package, so that llama.cpp and
transformers run the very same weights and tokenizer (tests only: real GGUFs come from the catalog)."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np

from dllg.experts import HFExpert

# Hugging Face Qwen2 tensor name (inside a layer, or global) -> GGUF name.
LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(hf_name: str) -> str:
    if hf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[hf_name]
    parts = hf_name.split(".")  # model.layers.N.<rest>
    return f"blk.{parts[2]}.{LAYER_TENSORS['.'.join(parts[3:])]}"


def export_gguf(expert: HFExpert, path: Path) -> Path:
    """`expert` (a Qwen2 model with a byte-level BPE tokenizer) as an f32 GGUF at `path`."""
    config = expert.model.config
    tokenizer = expert.tokenizer
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    assert [i for _, i in vocab] == list(range(len(vocab))), "token ids must be contiguous"
    specials = {t["content"] for t in spec["added_tokens"]}
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name(expert.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if token in specials else 1 for token, _ in vocab])  # 3: control
    writer.add_token_merges([" ".join(pair) for pair in spec["model"]["merges"]])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_eot_token_id(tokenizer.eos_token_id)  # else llama.cpp guesses <|endoftext|> ends turns too
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    for name, tensor in expert.model.state_dict().items():
        writer.add_tensor(gguf_name(name), tensor.detach().float().cpu().numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
