"""What every expert backend promises the decode loop: a step's outputs are the states teacher forcing reads
at the same positions, dropped rows leave the others untouched, a row rolled back by its own count and fed
the same tokens again gives the same outputs, and `mean_nll` is the sequence's mean next-token NLL."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dllg.experts import Expert
from dllg.tiny import tiny_expert, tiny_tokenizer

PROMPTS = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
FOLLOW = torch.tensor([[20, 21, 22], [23, 24, 25], [26, 27, 28]])  # three new tokens per row

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None


def hf_expert() -> Expert:
    return tiny_expert(0, tokenizer=tiny_tokenizer(), dtype=torch.float64)


def llamacpp_expert(tmp_path_factory) -> Expert:
    from gguf_export import export_gguf  # tests/experts/gguf_export.py

    from dllg.experts.llamacpp import LlamaCppExpert

    hf = tiny_expert(0, tokenizer=tiny_tokenizer())
    path = export_gguf(hf, tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return LlamaCppExpert("tiny-llamacpp", path, hf.tokenizer, context_tokens=1024, max_sequences=8)


@pytest.fixture(
    scope="module",
    params=[
        "hf",
        pytest.param("llamacpp", marks=pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python missing")),
    ],
)
def expert(request, tmp_path_factory) -> Expert:
    return hf_expert() if request.param == "hf" else llamacpp_expert(tmp_path_factory)


def tolerance(expert: Expert) -> dict:
    # llama.cpp: fp32 in its own kernels, not bitwise equal across batch shapes (seen here: 3e-3 on logits
    # of size ~5); HF here in float64 (mean_nll in fp32). A wrong row or position is off by O(1).
    return {"atol": 1e-2, "rtol": 1e-2} if expert.backend == "llamacpp" else {"atol": 1e-6, "rtol": 1e-6}


def decode(expert: Expert, prompts=PROMPTS, follow=FOLLOW) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per row, the logits and hidden states at the last prompt position and after each new token."""
    state, first = expert.prefill(prompts)
    try:
        out = expert.step(state, follow)
    finally:
        expert.release(state)
    logits = [torch.cat([first.logits[r], out.logits[r]]) for r in range(len(prompts))]
    hidden = [torch.cat([first.hidden[r], out.hidden[r]]) for r in range(len(prompts))]
    return logits, hidden


def test_step_outputs_are_the_teacher_forced_states(expert):
    _, hidden = decode(expert)
    sequences = [p + f.tolist() for p, f in zip(PROMPTS, FOLLOW, strict=True)]
    forced = expert.sequence_states(sequences)
    for row, prompt in enumerate(PROMPTS):
        # the decoded states sit at the last prompt position and at each fed token but the last
        torch.testing.assert_close(
            hidden[row].double(), forced[row][len(prompt) - 1 :].double(), **tolerance(expert)
        )


def test_teacher_forcing_from_a_start_reads_the_states_from_there_on(expert):
    """States from `starts[i]` on (what teacher forcing reads: the response's) are the tail of the full
    read's, each sequence by its own start (0, the middle, the last position)."""
    sequences = [p + f.tolist() for p, f in zip(PROMPTS, FOLLOW, strict=True)]
    starts = [0, 2, len(sequences[2]) - 1]
    full = expert.sequence_states(sequences)
    tails = expert.sequence_states(sequences, starts)
    for whole, tail, start in zip(full, tails, starts, strict=True):
        assert tail.shape == whole[start:].shape
        torch.testing.assert_close(tail.double(), whole[start:].double(), **tolerance(expert))


def test_a_row_decodes_the_same_beside_others_and_after_rows_left(expert):
    together, _ = decode(expert)
    alone, _ = decode(expert, [PROMPTS[1]], FOLLOW[1:2])
    torch.testing.assert_close(together[1].double(), alone[0].double(), **tolerance(expert))
    state, _ = expert.prefill(PROMPTS)
    try:
        expert.keep_rows(state, torch.tensor([2, 1]))  # row 0 leaves, and the others swap places
        out = expert.step(state, FOLLOW[[2, 1]])
    finally:
        expert.release(state)
    torch.testing.assert_close(out.logits[1].double(), together[1][1:].double(), **tolerance(expert))
    torch.testing.assert_close(out.logits[0].double(), together[2][1:].double(), **tolerance(expert))


def test_rollback_by_each_rows_count_then_the_same_tokens_give_the_same_outputs(expert):
    state, _ = expert.prefill(PROMPTS)
    try:
        first = expert.step(state, FOLLOW)
        expert.rollback(state, torch.tensor([0, 2, 3]))  # row 0 keeps all, row 1 one, row 2 none
        refeed = torch.tensor([[30, 31, 32], [*FOLLOW[1, 1:].tolist(), 40], FOLLOW[2].tolist()])
        again = expert.step(state, refeed)
    finally:
        expert.release(state)
    tol = tolerance(expert)
    torch.testing.assert_close(again.logits[1, :2].double(), first.logits[1, 1:].double(), **tol)
    torch.testing.assert_close(again.logits[2].double(), first.logits[2].double(), **tol)
    assert not torch.allclose(again.logits[0].double(), first.logits[0].double())  # row 0 went on


def test_mean_nll_is_the_mean_next_token_nll(expert):
    # decoding [5] then 6, 7, 8 gives the logits that predict 6, 7, 8, 9
    logits, _ = decode(expert, [[5]], torch.tensor([[6, 7, 8]]))
    expected = torch.nn.functional.cross_entropy(logits[0].double(), torch.tensor([6, 7, 8, 9]))
    got = expert.mean_nll([[5, 6, 7, 8, 9], [5]])
    assert got[1].item() == 0.0  # nothing to predict in a one-token sequence
    torch.testing.assert_close(got[0].double(), expected, **tolerance(expert))


def test_the_pool_knows_the_longest_sequence_every_expert_reads():
    from dllg.experts import ExpertPool
    from dllg.tiny import tiny_expert, tiny_tokenizer

    tok = tiny_tokenizer()
    pool = ExpertPool([tiny_expert(0, tokenizer=tok), tiny_expert(1, tokenizer=tok)])
    assert pool.max_sequence_tokens() == pool.experts[0].model.config.max_position_embeddings
    pool.experts[1].model.config.max_position_embeddings = 100
    assert pool.max_sequence_tokens() == 100
