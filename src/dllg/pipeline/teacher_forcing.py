"""Teacher forcing: every expert reads (prompt, reference response) in one pass; the gate sees the hidden
states at the positions that predict each response token, exactly the states decoding would give it."""

import torch

from dllg.errors import DllgError
from dllg.experts import ExpertPool


def teacher_forced_states(
    pool: ExpertPool, prompts: list[list[int]], responses: list[list[int]]
) -> list[list[torch.Tensor]]:
    """For each example, one (T, d_k) tensor per expert: the states at prompt_len-1 .. prompt_len+T-2,
    where position i's state predicts response token i (T = response length)."""
    if any(not p for p in prompts) or any(not r for r in responses):
        raise DllgError("teacher forcing needs a non-empty prompt and response for every example")
    # the last response token predicts nothing: each sequence ends one token early, and its states start at
    # the prompt's last token (the prompt's other positions need no outputs)
    sequences = [p + r[:-1] for p, r in zip(prompts, responses, strict=True)]
    starts = [len(p) - 1 for p in prompts]
    per_expert = [expert.sequence_states(sequences, starts) for expert in pool.experts]
    return [[states[row].float().cpu() for states in per_expert] for row in range(len(sequences))]
