"""Teacher-forced fused log-likelihoods: how likely the fused ensemble finds a continuation of a context.

Every running expert reads the contexts (prefill) and then the continuations (multi-token steps); the rule
fuses the continuation's positions together, starting from the context's last position, so a rule with
per-row state (a learned gate) gives each position the weights it would give while decoding those tokens.
The log-probability of a token is log_softmax of the fused scores (a no-op renormalisation for rules whose
scores already are log-probabilities). Long continuations go in chunks of positions: a chunk is one more
step, which is how decoding feeds several tokens too, so the weights are the same; only memory is bounded.
"""

from dataclasses import dataclass

import torch

from dllg.decode.step_inputs import check_finite, prompt_nll
from dllg.errors import DllgError
from dllg.experts import Expert, ExpertOutput, ExpertPool
from dllg.experts.padding import left_pad, right_pad
from dllg.fusion import FusionInput, FusionRule, PromptContext

# At most this many (row, position) pairs fused at once: the fused input holds rows x positions x K x V
# float32 values (a 150k vocabulary and two experts: 1.2 GB for 1024).
DEFAULT_CHUNK_POSITIONS = 1024


@dataclass
class ContinuationScore:
    logprob: float  # sum of the continuation tokens' fused log-probabilities
    greedy: bool  # every continuation token is the fused argmax at its position
    token_logprobs: list[float]  # one per continuation token


def _expert_outputs(expert: Expert, state: object, first: ExpertOutput | None, feed: torch.Tensor):
    """The expert's outputs at the chunk's positions: the prefill's last position (first chunk) followed by
    one step over `feed` (B, T) tokens."""
    parts = [first] if first is not None else []
    if feed.shape[1]:
        parts.append(expert.step(state, feed))
    return torch.cat([p.logits for p in parts], 1), torch.cat([p.hidden for p in parts], 1)


def score_continuations(
    pool: ExpertPool,
    rule: FusionRule,
    contexts: list[list[int]],
    continuations: list[list[int]],
    chunk_positions: int = DEFAULT_CHUNK_POSITIONS,
) -> list[ContinuationScore]:
    """Score each continuation (token ids, non-empty) after its context (token ids, non-empty), as one
    batch: a continuation's token i is predicted from the context and the continuation's tokens before i."""
    if len(contexts) != len(continuations):
        raise DllgError(f"{len(contexts)} contexts for {len(continuations)} continuations: give one each")
    if not contexts or any(not c for c in contexts) or any(not c for c in continuations):
        raise DllgError("every scored request needs a non-empty context and continuation (token ids)")
    running = rule.bind(pool.names)
    experts = [pool[i] for i in running]
    rule.notice_backends([e.backend for e in experts])
    names = [pool.names[i] for i in running]
    device = experts[0].device
    targets, _ = right_pad(continuations, pool.pad_token_id())  # (B, T); padding is never read back
    # Tokens fed after the context: the continuation but its last token (which nothing has to predict).
    feed = targets[:, :-1]
    width = targets.shape[1]
    chunk = max(1, chunk_positions // len(contexts))
    picked = torch.empty(targets.shape, dtype=torch.float32)
    is_best = torch.empty(targets.shape, dtype=torch.bool)

    states: list[tuple[Expert, object]] = []
    try:
        firsts = []
        for expert in experts:
            state, first = expert.prefill(contexts)
            states.append((expert, state))
            firsts.append(first)
        nll = prompt_nll(experts, contexts, device) if rule.needs_prompt_nll else None
        ids, mask = left_pad(contexts, pool.pad_token_id())
        rule.start(PromptContext(input_ids=ids, attention_mask=mask, prompt_nll=nll))
        for start in range(0, width, chunk):
            stop = min(width, start + chunk)
            # position p is predicted by the output after feed[:, p - 1] (the prefill's for p = 0)
            fed = feed[:, max(0, start - 1) : stop - 1]
            outputs = [
                _expert_outputs(expert, state, first if start == 0 else None, fed)
                for (expert, state), first in zip(states, firsts, strict=True)
            ]
            inputs = FusionInput(
                logits=torch.stack([logits.to(device, torch.float32) for logits, _ in outputs], dim=2),
                hidden=[hidden.to(device) for _, hidden in outputs],
            )
            fused = rule.fuse(inputs)
            check_finite(fused, inputs, names, rule.name, start)
            logprobs = torch.log_softmax(fused.scores.float(), dim=-1)
            wanted = targets[:, start:stop].to(logprobs.device)
            picked[:, start:stop] = logprobs.gather(-1, wanted.unsqueeze(-1)).squeeze(-1).cpu()
            is_best[:, start:stop] = (logprobs.argmax(-1) == wanted).cpu()
    finally:
        for expert, state in states:
            expert.release(state)

    scores = []
    for row, continuation in enumerate(continuations):
        values = picked[row, : len(continuation)]
        scores.append(
            ContinuationScore(
                logprob=float(values.double().sum()),
                greedy=bool(is_best[row, : len(continuation)].all()),
                token_logprobs=values.tolist(),
            )
        )
    return scores
