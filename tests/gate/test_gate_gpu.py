"""The learned gate decoding on a GPU gives the weights teacher forcing gives on the CPU (CUDA only)."""

import pytest
import torch
from test_gate import small_gate  # the same small perturbed gate as the CPU tests

from dllg.decode import GenerationConfig, generate
from dllg.fusion import make_rule
from dllg.pipeline.teacher_forcing import teacher_forced_states
from dllg.tiny import tiny_model, tiny_pool

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gate_on_gpu_matches_teacher_forcing_on_cpu(tmp_path):
    tiny_model(7, vocab_rows=16, hidden=32).save_pretrained(tmp_path / "aux")
    gpu_pool = tiny_pool(dtype="fp32", device="cuda")
    gate = small_gate(
        "lowrank_aux_lm", gpu_pool.names, [e.hidden_size for e in gpu_pool.experts], str(tmp_path / "aux")
    )
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
