"""Choose the next token from fused scores: greedy, or temperature + top-p sampling with a seed."""

import torch

from dllg.decode.config import GenerationConfig


def make_generator(config: GenerationConfig, device: torch.device) -> torch.Generator | None:
    if config.greedy:
        return None
    generator = torch.Generator(device=device)
    if config.seed is not None:
        generator.manual_seed(config.seed)
    else:
        generator.seed()
    return generator


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (always at least the best one)."""
    if top_p >= 1:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
    drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_probs(scores: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    """(..., V) scores -> the probabilities a token is drawn with (temperature, then top-p)."""
    return torch.softmax(top_p_filter(scores / config.temperature, config.top_p), dim=-1)


def choose_tokens(
    scores: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """(B, V) scores -> (B,) token ids."""
    if config.greedy:
        return scores.argmax(-1)
    return torch.multinomial(sampling_probs(scores, config), 1, generator=generator).squeeze(-1)


def sample_with_drafts(
    probs: torch.Tensor, drafts: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Speculative sampling: (B, T, V) probabilities of the tokens to sample at T fed positions, and the
    (B, T - 1) drafted tokens fed after the first -> (B, T) tokens, distributed as the plain loop's.

    A draft is one proposed token (a point mass), so the standard rejection rule (keep a draft d with
    probability min(1, p(d) / q(d)), else draw from the normalised max(0, p - q)) reads: keep d with
    probability p(d), else draw from p without d. A row's tokens equal its drafts up to its first refusal,
    and a refused position's token is never the draft, so the loop keeps exactly the valid positions."""
    rows, positions, vocab = probs.shape
    tokens = torch.empty(rows, positions, dtype=torch.long, device=probs.device)
    tokens[:, -1] = torch.multinomial(probs[:, -1], 1, generator=generator).squeeze(-1)
    if positions == 1:
        return tokens
    checked = probs[:, :-1]
    drafts = drafts.to(probs.device)
    kept_probability = checked.gather(-1, drafts.unsqueeze(-1)).squeeze(-1)
    draws = torch.rand(kept_probability.shape, generator=generator, device=probs.device)
    residual = checked.scatter(-1, drafts.unsqueeze(-1), 0.0)
    mass = residual.sum(-1, keepdim=True)
    # a draft with all the mass is always kept (draws < 1): its residual is never used, any row will do
    residual = torch.where(mass > 0, residual / mass.clamp_min(1e-30), checked)
    redrawn = torch.multinomial(residual.reshape(-1, vocab), 1, generator=generator).view(rows, -1)
    tokens[:, :-1] = torch.where(draws < kept_probability, drafts, redrawn)
    return tokens
