"""The learned gate decoding on a GPU gives the weights teacher forcing gives on the CPU (CUDA only)."""

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.fusion import make_rule
from dllg.gate import GateConfig, build_gate
from dllg.pipeline.teacher_forcing import teacher_forced_states
from dllg.tiny import tiny_model, tiny_pool

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gate_on_gpu_matches_teacher_forcing_on_cpu(tmp_path):
    tiny_model(7, vocab_rows=16, hidden=32).save_pretrained(tmp_path / "aux")
    gpu_pool = tiny_pool(dtype="fp32", device="cuda")
    config = GateConfig(
        variant="lowrank_aux_lm",
        expert_names=gpu_pool.names,
        aux_model=str(tmp_path / "aux"),
        hidden_sizes=[e.hidden_size for e in gpu_pool.experts],
        proj_rank=8,
        lora_rank=4,
        head_hidden=16,
    )
    gate = build_gate(config)
    with torch.no_grad():
        for param in gate.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.3)
    prompts = [gpu_pool.tokenizer(t)["input_ids"] for t in ["def add(a, b):", "Hello there, how"]]
    out = generate(
        gpu_pool, make_rule("dllg", gate=gate), prompts, GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    )
    cpu_pool = tiny_pool(dtype="fp32", device="cpu")
    gate.to("cpu")
    for states, generation in zip(
        teacher_forced_states(cpu_pool, prompts, [g.token_ids for g in out]), out, strict=True
    ):
        with torch.no_grad():
            expected = gate([h.unsqueeze(0) for h in states])[0]
        torch.testing.assert_close(generation.weights, expected, rtol=1e-3, atol=1e-4)
